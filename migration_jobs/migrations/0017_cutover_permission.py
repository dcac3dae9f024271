# Written by hand: the Cut over button now checks cutover_migrationrun, as Switch back and Complete
# check their own permissions; it used to check change_flag_state. Whoever could cut over keeps it.

from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant_cutover_to_flag_changers(apps, schema_editor):
    database = schema_editor.connection.alias
    # Permissions are created after the migrations run; an existing database has these two already,
    # and a new one has nobody who holds change_flag_state.
    app_config = apps.get_app_config("migration_jobs")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=database)
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.using(database).filter(content_type__app_label="migration_jobs")
    flag_state = permissions.filter(codename="change_flag_state").first()
    cutover = permissions.filter(codename="cutover_migrationrun").first()
    if flag_state is None or cutover is None:
        return
    User, Group = apps.get_model("auth", "User"), apps.get_model("auth", "Group")
    for user in User.objects.using(database).filter(user_permissions=flag_state):
        user.user_permissions.add(cutover)
    for group in Group.objects.using(database).filter(permissions=flag_state):
        group.permissions.add(cutover)


class Migration(migrations.Migration):
    dependencies = [
        ("migration_jobs", "0016_set_app_context"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant_cutover_to_flag_changers, migrations.RunPython.noop)]
