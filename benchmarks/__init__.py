"""Performance benchmarks: scripts that measure two sides in one run and print a ratio (docs/benchmarks.md)."""
