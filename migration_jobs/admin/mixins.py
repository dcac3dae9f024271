"""What several admins share."""

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse

# The mixins' methods call the ModelAdmin's they precede in a class's bases; the type checker reads
# them as ModelAdmin subclasses, Python as plain classes (a mixin adds no second admin to the MRO).
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin
else:
    _ModelAdmin = object


def staff_user(request: HttpRequest) -> User:
    """Who asks, in an admin view: admin_site.admin_view lets signed-in staff alone through, so the
    user is never the anonymous one django-stubs allows for."""
    return cast(User, request.user)


class ViewOnlyMixin:
    """Records that are evidence or tenant data: staff read them, nobody edits them in a form.

    Works for ModelAdmins and inlines alike (inlines pass `obj` to has_add_permission too).
    """

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ObjectIdMixin(_ModelAdmin):
    """A malformed or unknown id in an admin URL (`/featureflag/abc/state/`) is a 404, not a 500 or
    a redirect.

    Django's own views answer an id that does not parse, or names no row, with a redirect to the
    index ("… doesn't exist. Perhaps it was deleted?"); custom views that look rows up themselves
    raised ValueError. Every view of these admins gets its object through `get_object`, which
    refuses an id the primary key cannot hold and one no row has.
    """

    # Any: the admin's own model, which these unparametrised ModelAdmins do not name to the type checker.
    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
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

    def object_or_404(self, request: HttpRequest, object_id: str) -> Any:
        """The row for a custom view's `<object_id>`: 404 when malformed or missing."""
        return self.get_object(request, unquote(object_id))


def post_only_page(request: HttpRequest, *, admin_site: AdminSite, back: str, back_label: str) -> TemplateResponse:
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
