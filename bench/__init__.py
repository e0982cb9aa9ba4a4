"""vaultd benchmarks: `make bench` (or `python -m bench`) prints the figures."""
