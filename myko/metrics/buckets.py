"""Histogram buckets shared by the metric families, in seconds or counts."""

from __future__ import annotations

# From a cached in-memory answer (~1 ms) to a command waiting out a broker failover.
LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Commands per group commit: powers of two up to CommandBus's max_batch (512).
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
