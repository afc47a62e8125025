"""Benchmarks: call economy, sweep cost vs table size, webhook ingestion, poll throughput.

`python -m bench` runs them all, `python -m bench --quick` the short version (`make bench`).
Each one measures its own baseline in the same run and prints the ratio against it;
results go to `bench/results/` (git-ignored). See docs/benchmarks.md.
"""
