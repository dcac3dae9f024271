"""The refusal every request path raises, so that admin views, commands and bulk actions catch one thing.

Below services and selectors alike: a read (resolving an agency someone typed) refuses in the
same words as a write.
"""


class RunRefused(Exception):
    """The run cannot be queued; the message tells staff why. Nothing was queued or written."""
