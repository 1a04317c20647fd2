"""Writing a generated table as CSV, and the command line every generator shares."""

import argparse
import os

import pyarrow.csv as pacsv


def write_csv(generate, path: str, num_rows: int, seed: int = 0) -> str:
    """``generate(num_rows, seed)`` -> CSV at ``path`` (written to a temp name, then renamed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pacsv.write_csv(generate(num_rows, seed), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def main(generate, description: str, default_rows: int, argv=None) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=default_rows)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    print(write_csv(generate, args.output, args.rows, args.seed))
