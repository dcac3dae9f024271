"""What several admins share."""

from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse


class ViewOnlyMixin:
    """Records that are evidence or tenant data: staff read them, nobody edits them in a form.

    Works for ModelAdmins and inlines alike (inlines pass `obj` to has_add_permission too).
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ObjectIdMixin:
    """A malformed or unknown id in an admin URL (`/featureflag/abc/state/`) is a 404, not a 500 or
    a redirect.

    Django's own views answer an id that does not parse, or names no row, with a redirect to the
    index ("… doesn't exist. Perhaps it was deleted?"); custom views that look rows up themselves
    raised ValueError. Every view of these admins gets its object through `get_object`, which
    refuses an id the primary key cannot hold and one no row has.
    """

    def get_object(self, request, object_id, from_field=None):
        field = self.model._meta.pk if from_field is None else self.model._meta.get_field(from_field)
        try:
            # to_python parses; the validators refuse what the column cannot hold (a 30-digit id)
            field.run_validators(field.to_python(object_id))
        except (ValidationError, ValueError, TypeError):
            raise Http404(f"{object_id!r} is not a {self.model._meta.verbose_name} id.") from None
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id!r}.")
        return obj

    def object_or_404(self, request, object_id: str):
        """The row for a custom view's `<object_id>`: 404 when malformed or missing."""
        return self.get_object(request, unquote(object_id))


def post_only_page(request: HttpRequest, *, admin_site, back: str, back_label: str) -> TemplateResponse:
    """A GET of a button's URL (a bookmark, a reload): a page that says so and links back, as a 405.

    Every POST-only admin view answers a GET with it, so no action URL is a bare 405.
    """
    context = {
        **admin_site.each_context(request),
        "title": "This address is a button",
        "back": back,
        "back_label": back_label,
    }
    response = TemplateResponse(request, "admin/migration_jobs/post_only.html", context, status=405)
    response["Allow"] = "POST"
    return response
