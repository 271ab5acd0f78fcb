"""``make bench``: the system in its production configuration, measured in one run (docs/benchmarks.md)."""
