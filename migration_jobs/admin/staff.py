"""Django's own staff accounts and groups, under the rule every admin page here follows: a malformed
id in the URL is a 404, not a redirect to the index (which reads as "that user was deleted")."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from migration_jobs.admin.mixins import ObjectIdMixin

User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(ObjectIdMixin, UserAdmin):
    """Django's user admin, with malformed ids refused."""


@admin.register(Group)
class StaffGroupAdmin(ObjectIdMixin, GroupAdmin):
    """Django's group admin, with malformed ids refused."""
