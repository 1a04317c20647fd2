"""Always-valid comparison of a canary with the stable version: the mixture SPRT's confidence sequence.

Why this test. The monitor looks at a canary again and again (every ``kubetfx monitor``, every
scheduled monitor run) and stops as soon as it is sure; a fixed-sample test (a t-test, a chi-square
test) read at every look promotes a worse canary far more often than its alpha says. The mixture
sequential probability ratio test (mSPRT; Robbins 1970, as used for A/B tests by Johari, Koomen,
Pekelis and Walsh, "Always Valid Inference", Operations Research 2022) stays valid under
continuous monitoring: with the difference of the two means estimated as ``d`` with variance
``s2`` and a normal mixing distribution ``N(0, tau^2)`` over the true difference ``theta``,

    Lambda = sqrt(s2 / (s2 + tau^2)) * exp(tau^2 (d - theta)^2 / (2 s2 (s2 + tau^2)))

is (for Gaussian estimates) a nonnegative martingale under ``theta``, so by Ville's inequality it
ever reaches ``1/alpha`` with probability at most ``alpha``. The ``theta`` it never rejects form a
confidence sequence -- an interval that holds at every look at once, with probability ``1 - alpha``:

    |d - theta| < sqrt(s2 (s2 + tau^2) / tau^2 * log((s2 + tau^2) / (s2 alpha^2)))

Every decision below reads that interval, so the chance of promoting a canary that is in truth
worse than the stable version by more than the margin -- at whatever look the monitor happens to
decide -- is at most ``alpha``. The variances are the arms' sample variances (Bernoulli rates are
smoothed, ``(k + 1) / (n + 2)``, so a perfect score does not claim zero variance); that plug-in makes
the guarantee asymptotic, which is why a decision also waits for ``min_samples`` per arm. ``tau``
is the margin: the mixture puts its weight where the effects that matter are.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Arm:
    """One version's values: how many, their mean, and the variance of one value."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values, bernoulli: bool = False) -> "Arm":
        values = np.asarray(values, dtype=np.float64)
        n = int(values.size)
        if not n:
            return cls(0, math.nan, math.nan)
        mean = float(values.mean())
        if bernoulli:
            smoothed = (float(values.sum()) + 1.0) / (n + 2.0)
            return cls(n, mean, smoothed * (1.0 - smoothed))
        return cls(n, mean, float(values.var(ddof=1)) if n > 1 else math.nan)


@dataclasses.dataclass(frozen=True)
class Interval:
    """The difference canary - stable (oriented: positive is better for the canary) and its confidence sequence."""

    estimate: float
    low: float
    high: float
    mixture_ratio: float  # the mSPRT statistic Lambda at theta = 0 (>= 1/alpha: a difference, at level alpha)


def half_width(s2: float, alpha: float, tau: float) -> float:
    """The confidence sequence's half width for an estimate of variance ``s2``."""
    if not s2 > 0:
        return math.inf if math.isnan(s2) else 0.0
    t2 = tau * tau
    return math.sqrt(s2 * (s2 + t2) / t2 * math.log((s2 + t2) / (s2 * alpha * alpha)))


def compare(stable: Arm, canary: Arm, alpha: float, tau: float, higher_is_better: bool = True) -> Interval:
    """The always-valid interval for (canary - stable), sign-flipped when lower values are better."""
    if stable.n < 2 or canary.n < 2:
        return Interval(math.nan, -math.inf, math.inf, 1.0)
    sign = 1.0 if higher_is_better else -1.0
    estimate = sign * (canary.mean - stable.mean)
    s2 = canary.variance / canary.n + stable.variance / stable.n
    width = half_width(s2, alpha, tau)
    t2 = tau * tau
    ratio = (math.sqrt(s2 / (s2 + t2)) * math.exp(min(700.0, t2 * estimate ** 2 / (2 * s2 * (s2 + t2))))
             if s2 > 0 else math.inf)
    return Interval(estimate, estimate - width, estimate + width, ratio)


def planned_samples(variance: float, alpha: float, tau: float, target: float, limit: int = 10_000_000) -> int:
    """The per-arm sample size at which the interval's half width (equal arms of ``variance``) is ``target``:
    where a canary that is not better is decided on as not worse by more than the margin (the test's length)."""
    if not variance > 0 or not target > 0:
        return 2
    low, high = 2, 2
    while half_width(2 * variance / high, alpha, tau) > target:
        low, high = high, high * 2
        if high > limit:
            return limit
    while low < high:
        middle = (low + high) // 2
        if half_width(2 * variance / middle, alpha, tau) > target:
            low = middle + 1
        else:
            high = middle
    return high
