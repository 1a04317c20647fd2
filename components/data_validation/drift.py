"""Distribution distances used for drift and skew detection (pure functions, no protos).

* ``linf_distance``: L-infinity distance between two categorical distributions,
  i.e. the largest absolute difference of normalized value frequencies. In [0, 1].
* ``jensen_shannon_divergence``: JSD (log base 2, in [0, 1]) between two discrete
  distributions given as aligned count vectors or as value -> count maps.
* ``histogram_jensen_shannon_divergence``: JSD between two numeric histograms
  after rebinning both onto the union of their bucket boundaries, assuming a
  uniform density inside each bucket (the approach TFDV takes).

All functions return ``None`` when either side holds no mass (nothing to compare).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence

# A histogram bucket: (low_value, high_value, sample_count).
Bucket = tuple[float, float, float]


def normalize(counts: Mapping) -> dict | None:
    """value -> count mapped to value -> frequency (sums to 1); None if there is no mass."""
    total = float(sum(c for c in counts.values() if c > 0))
    if total <= 0:
        return None
    return {key: max(float(c), 0.0) / total for key, c in counts.items()}


def linf_distance(counts_a: Mapping, counts_b: Mapping) -> tuple[float, object] | None:
    """L-infinity distance between two value -> count maps, normalized separately.

    Returns ``(distance, value_with_the_largest_difference)``, or None when either
    map is empty / all zero. A value missing on one side counts as frequency 0.
    """
    freq_a, freq_b = normalize(counts_a), normalize(counts_b)
    if freq_a is None or freq_b is None:
        return None
    best_value, best = None, -1.0
    for value in sorted(set(freq_a) | set(freq_b), key=str):
        diff = abs(freq_a.get(value, 0.0) - freq_b.get(value, 0.0))
        if diff > best:
            best_value, best = value, diff
    return min(best, 1.0), best_value


def _kl_to_mixture(p: Sequence[float], m: Sequence[float]) -> float:
    return sum(pi * math.log2(pi / mi) for pi, mi in zip(p, m) if pi > 0)


def jensen_shannon_divergence(counts_a: Sequence[float] | Mapping,
                              counts_b: Sequence[float] | Mapping) -> float | None:
    """JSD (base 2) between two discrete distributions.

    Accepts two aligned count sequences of the same length, or two value -> count
    maps (aligned over the union of their keys). Counts need not be normalized.
    """
    if isinstance(counts_a, Mapping) or isinstance(counts_b, Mapping):
        keys = sorted(set(counts_a) | set(counts_b), key=str)
        counts_a = [counts_a.get(k, 0.0) for k in keys]
        counts_b = [counts_b.get(k, 0.0) for k in keys]
    if len(counts_a) != len(counts_b):
        raise ValueError(f"count vectors differ in length ({len(counts_a)} vs {len(counts_b)})")
    total_a = float(sum(max(c, 0.0) for c in counts_a))
    total_b = float(sum(max(c, 0.0) for c in counts_b))
    if total_a <= 0 or total_b <= 0:
        return None
    p = [max(c, 0.0) / total_a for c in counts_a]
    q = [max(c, 0.0) / total_b for c in counts_b]
    m = [(pi + qi) / 2 for pi, qi in zip(p, q)]
    value = (_kl_to_mixture(p, m) + _kl_to_mixture(q, m)) / 2
    return min(max(value, 0.0), 1.0)  # clamp rounding noise


def _cells(buckets: Iterable[Bucket], num_nan: float, boundaries: list[float]) -> dict:
    """Spread one histogram's mass over the cells of the common grid.

    Cells: ``("range", i)`` for [boundaries[i], boundaries[i+1]], ``("point", v)``
    for zero-width buckets, ``("-inf",)``/``("+inf",)`` for buckets with an
    infinite bound, and ``("nan",)``.
    """
    cells: dict = {}

    def add(key, amount):
        if amount > 0:
            cells[key] = cells.get(key, 0.0) + amount

    for low, high, count in buckets:
        if count <= 0:
            continue
        if math.isinf(low) or math.isinf(high):
            add(("-inf",) if low == -math.inf else ("+inf",), count)
        elif low == high:
            add(("point", low), count)
        else:
            if low > high:
                low, high = high, low
            start = bisect.bisect_left(boundaries, low)
            end = bisect.bisect_left(boundaries, high)
            width = high - low
            for i in range(start, end):
                add(("range", i), count * (boundaries[i + 1] - boundaries[i]) / width)
    add(("nan",), num_nan)
    return cells


_CELL_KINDS = {"-inf": 0, "range": 1, "point": 2, "+inf": 3, "nan": 4}


def _cell_order(key: tuple) -> tuple:
    return (_CELL_KINDS[key[0]],) + key[1:]


def align_histograms(buckets_a: Sequence[Bucket], buckets_b: Sequence[Bucket],
                     nan_a: float = 0.0, nan_b: float = 0.0) -> tuple[list[float], list[float]]:
    """Rebin two histograms onto the union of their bucket boundaries.

    Mass inside a bucket is assumed uniformly spread, so a sub-interval receives
    ``count * sub_width / bucket_width``. Zero-width buckets stay point masses,
    buckets with an infinite bound and NaN counts get cells of their own (shared
    by both sides, so identical histograms align to identical vectors).
    Returns two count vectors over the same cells.
    """
    edges = set()
    for low, high, _ in list(buckets_a) + list(buckets_b):
        if math.isfinite(low) and math.isfinite(high) and low != high:
            edges.update((low, high))
    boundaries = sorted(edges)
    cells_a = _cells(buckets_a, nan_a, boundaries)
    cells_b = _cells(buckets_b, nan_b, boundaries)
    keys = sorted(set(cells_a) | set(cells_b), key=_cell_order)
    return [cells_a.get(k, 0.0) for k in keys], [cells_b.get(k, 0.0) for k in keys]


def histogram_jensen_shannon_divergence(buckets_a: Sequence[Bucket], buckets_b: Sequence[Bucket],
                                        nan_a: float = 0.0, nan_b: float = 0.0) -> float | None:
    """JSD (base 2, in [0, 1]) between two numeric histograms with any bucket boundaries."""
    aligned_a, aligned_b = align_histograms(buckets_a, buckets_b, nan_a, nan_b)
    return jensen_shannon_divergence(aligned_a, aligned_b)
