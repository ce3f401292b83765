"""Latency samples and the percentiles the report prints."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Samples:
    """Durations in seconds, in the order they were taken."""

    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def extend(self, seconds: Iterable[float]) -> None:
        self.values.extend(seconds)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def joined(cls, parts: Iterable[Samples]) -> Samples:
        """One set of the samples of several measurements (e.g. alternating rounds)."""
        return cls([v for part in parts for v in part.values])

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
        if not self.values:
            return math.nan
        ordered = sorted(self.values)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan
