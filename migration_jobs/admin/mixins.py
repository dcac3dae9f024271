"""What several admins share."""


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
