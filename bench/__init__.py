"""`make bench`: Myko's latency and throughput against the raw Kafka floor of the same run.

Run as `python -m bench` (see bench/cli.py for options); docs/benchmarks.md
holds the last recorded results and how to read them.
"""
