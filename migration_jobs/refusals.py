"""The refusals: the one every request path raises, so that admin views, commands and bulk actions
catch one thing, and the flags' own.

Below services and selectors alike: a read (resolving an agency someone typed) refuses in the
same words as a write.
"""


class RunRefused(Exception):
    """The run cannot be queued; the message tells staff why. Nothing was queued or written."""


class CutoverRefused(Exception):
    """Turning a verification-gated flag on was refused; the message says why, for staff to read."""


def reason_required(reason: str | None, what: str, *, kept_with: str = "the run and the unified_db change") -> str:
    """The reason staff typed, trimmed; RunRefused when there is none (`what`: "A cutover"; `kept_with`:
    where the reason is recorded)."""
    reason = (reason or "").strip()
    if not reason:
        raise RunRefused(f"{what} needs a reason; it is kept with {kept_with}.")
    return reason
