from migration_jobs.management.schema_command import SchemaCommand


class Command(SchemaCommand):
    help = "Apply the versioned SQL in sql/revos/ to the RevOS source database (demo and tests)."
    database = "revos"
