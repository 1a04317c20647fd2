"""Synthetic customer-churn data (binary classification) at any row count.

String and numeric features; the label comes from a known logistic model plus
noise, so a model can learn it (Bayes accuracy ~0.8) and results are checkable.
"""

import numpy as np
import pyarrow as pa

from kubetfx.pipelines.synthetic import writer

LABEL = "churned"
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("bank-transfer", "credit-card", "electronic-check", "mailed-check")
REGIONS = tuple(f"region-{i:02d}" for i in range(40))


def generate(num_rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    contract = rng.choice(len(CONTRACTS), num_rows, p=[0.55, 0.25, 0.20])
    payment = rng.integers(0, len(PAYMENT_METHODS), num_rows)
    region = rng.integers(0, len(REGIONS), num_rows)
    tenure = rng.integers(0, 73, num_rows)
    monthly = np.round(rng.uniform(18, 120, num_rows), 2)
    support_calls = rng.poisson(1.5, num_rows)
    region_effect = np.linspace(-0.6, 0.6, len(REGIONS))[region]
    logit = (-0.3 + 1.4 * (contract == 0) - 1.2 * (contract == 2) + 0.6 * (payment == 2)
             - 0.045 * tenure + 0.018 * (monthly - 70) + 0.45 * support_calls + region_effect)
    churned = (rng.random(num_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table({
        "contract": np.array(CONTRACTS, dtype=object)[contract],
        "payment_method": np.array(PAYMENT_METHODS, dtype=object)[payment],
        "region": np.array(REGIONS, dtype=object)[region],
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "support_calls": support_calls,
        LABEL: churned,
    })


def write_csv(path: str, num_rows: int, seed: int = 0) -> str:
    return writer.write_csv(generate, path, num_rows, seed)


if __name__ == "__main__":
    writer.main(generate, __doc__, 100_000)
