from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('migration_jobs', '0004_unified_models_and_client_links'),
    ]

    operations = [
        migrations.AddField(
            model_name='migrationrun',
            name='bulk_request',
            field=models.UUIDField(blank=True, db_index=True, null=True),
        ),
    ]
