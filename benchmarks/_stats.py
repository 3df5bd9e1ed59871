"""Percentiles for the benchmarks (nearest rank on sorted samples, reported in microseconds)."""

from __future__ import annotations


def percentiles_us(values_ns: list[int]) -> dict[str, float]:
    values = sorted(values_ns)
    if not values:
        return {"p50_us": 0.0, "p90_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "mean_us": 0.0}

    def pct(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] / 1000

    return {
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "max_us": values[-1] / 1000,
        "mean_us": sum(values) / len(values) / 1000,
    }
