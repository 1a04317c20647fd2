"""Penguin-like synthetic data at any row count (for benchmarks).

Per-species feature distributions are fitted on the real Palmer Penguins rows,
so the generated data has the same columns, types and roughly the same shape.
"""

import numpy as np
import pyarrow as pa

from kubetfx.pipelines.penguin import data as penguin_data
from kubetfx.pipelines.synthetic import writer

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def generate(num_rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    real = penguin_data.load_table(drop_missing=True).to_pydict()
    species_names = sorted(set(real["species"]))
    species_idx = rng.integers(0, len(species_names), num_rows)
    columns: dict[str, object] = {"species": np.array(species_names, dtype=object)[species_idx]}
    islands = sorted(set(real["island"]))
    columns["island"] = np.array(islands, dtype=object)[rng.integers(0, len(islands), num_rows)]
    for name in NUMERIC:
        values = np.empty(num_rows)
        for k, species in enumerate(species_names):
            sample = np.array([v for v, s in zip(real[name], real["species"]) if s == species], dtype=float)
            mask = species_idx == k
            values[mask] = rng.normal(sample.mean(), sample.std(), mask.sum())
        if isinstance(real[name][0], int):
            values = np.round(values).astype(np.int64)
        else:
            values = np.round(values, 1)
        columns[name] = values
    columns["sex"] = np.where(rng.random(num_rows) < 0.5, "male", "female").astype(object)
    columns["year"] = rng.integers(2007, 2010, num_rows)
    return pa.table(columns)


def write_csv(path: str, num_rows: int, seed: int = 0) -> str:
    return writer.write_csv(generate, path, num_rows, seed)


if __name__ == "__main__":
    writer.main(generate, __doc__, 1_000_000)
