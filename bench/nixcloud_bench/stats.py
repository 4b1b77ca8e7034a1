"""The median of samples, NaN for none; the range of counts."""

import statistics


def med(samples):
    return statistics.median(samples) if samples else float("nan")


def span(counts):
    """'n' when all counts are n, else 'min-max'."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"
