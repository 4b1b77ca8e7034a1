"""The median of samples, NaN for none."""

import statistics


def med(samples):
    return statistics.median(samples) if samples else float("nan")
