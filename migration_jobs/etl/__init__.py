"""The migration engine's parts: connections, catalog reads, per-table SQL, the batch writer."""
