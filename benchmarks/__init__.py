"""Side-by-side benchmarks against peer tools; `make bench` writes benchmarks/RESULTS.md."""
