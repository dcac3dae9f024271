"""Demo data: synthetic RevOS and AudienceOS tenants (demo.py) and the seed's Phase 0 problems
(phase0.py). Neither is a service of the control plane: `seed_demo`, the tests and the benchmarks
use them to build databases to migrate."""
