from migration_jobs.management.schema_command import SchemaCommand


class Command(SchemaCommand):
    help = "Apply the versioned SQL in sql/unified/ to the unified database (only what is new)."
    database = "unified"
