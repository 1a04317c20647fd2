"""The TFX 1.16 anchor (../shared/anchor-tfx set up by its setup.sh): run its penguin pipeline, read its results.

The anchor lives in its own Python 3.10 venv in ``ANCHOR_DIR`` (``venv/``, ``pipeline/penguin_pipeline.py``,
``data/penguins``, ``data/penguins_1m``): it cannot be imported here, so it runs as a subprocess and its
Evaluator's accuracy is read by its own Python.
"""

import json
import os
import subprocess
import time

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "anchor")
PENGUINS, PENGUINS_1M = "penguins", "penguins_1m"
# Overall-slice SparseCategoricalAccuracy and ExampleCount of the newest TFMA result under a pipeline root.
_READ_ACCURACY = """
import glob, json, os, sys
import tensorflow_model_analysis as tfma
paths = sorted(glob.glob(os.path.join(sys.argv[1], "**", "Evaluator", "evaluation", "*"), recursive=True),
               key=os.path.getmtime)
result = tfma.load_eval_result(paths[-1])
metrics = next(m for s, m in result.slicing_metrics if s == ())
values = {k: v.get("doubleValue") for output in metrics.values() for sub in output.values() for k, v in sub.items()}
print(json.dumps({"accuracy": values.get("sparse_categorical_accuracy"), "examples": values.get("example_count")}))
"""


def locate(anchor_dir: str | None) -> str | None:
    """The anchor's folder when it is set up (its venv and pipeline exist), else None."""
    folder = os.path.abspath(anchor_dir or os.environ.get("ANCHOR_DIR") or DEFAULT_DIR)
    ready = all(os.path.exists(os.path.join(folder, p)) for p in
                ("venv/bin/python", "pipeline/penguin_pipeline.py", f"data/{PENGUINS}", f"data/{PENGUINS_1M}"))
    return folder if ready else None


def data_csv(anchor: str, dataset: str) -> str:
    folder = os.path.join(anchor, "data", dataset)
    return os.path.join(folder, next(f for f in sorted(os.listdir(folder)) if f.endswith(".csv")))


def run(anchor: str, dataset: str, root: str) -> dict:
    """One run of the anchor's whole pipeline (caching off): wall time, per-component seconds, eval accuracy."""
    summary = os.path.join(root, "summary.json")
    command = [os.path.join(anchor, "venv", "bin", "python"), os.path.join("pipeline", "penguin_pipeline.py"),
               "--data", os.path.join("data", dataset), "--root", root, "--no-cache", "--summary", summary]
    started = time.time()
    with open(os.path.join(root, "anchor.log"), "w", encoding="utf-8") as log:
        code = subprocess.run(command, cwd=anchor, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"the TFX anchor failed (exit code {code}); its log: {os.path.join(root, 'anchor.log')}")
    with open(summary, encoding="utf-8") as handle:
        components = {name.lower(): info.get("log_s") for name, info in json.load(handle)["components"].items()}
    read = subprocess.run([command[0], "-c", _READ_ACCURACY, root], capture_output=True, text=True, check=False)
    quality = json.loads(read.stdout.strip().splitlines()[-1]) if read.returncode == 0 and read.stdout.strip() else {}
    return {"whole_s": wall, "components": components, **quality}


def stage(components: dict, task: str):
    """The anchor's seconds for one of our tasks (``example-gen`` is TFX's CsvExampleGen), or None."""
    name = task.replace("-", "")
    return components.get(name, components.get("csv" + name))
