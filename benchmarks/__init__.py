"""`python -m benchmarks`: how fast the migration is next to what this machine can do.

One run seeds a RevOS agency of a given size and measures, on the same data: a raw COPY pipeline
(the baseline), pgloader, the project's migration through a real RQ worker, its verification, the
worker's peak memory at several agency sizes, and the admin changelist's latency on a million
clients. The figures are printed as a table and written to a JSON file; targets are reported as
met or missed, never asserted. It runs in scratch databases it creates and drops, so the data of
the databases it is pointed at is never touched.
"""
