"""Where the Evaluator's tests have it write: the output paths of one run, and the model name baselines go under."""

import os

MODEL_NAME = "penguin"


def output_paths(root) -> dict:
    """The Evaluator's output arguments for one run under ``root``."""
    root = str(root)
    return {"evaluation_dir": os.path.join(root, "evaluation"), "blessing_dir": os.path.join(root, "blessing"),
            "report_path": os.path.join(root, "report.md"), "metrics_path": os.path.join(root, "metrics.json"),
            "classification_metrics_path": os.path.join(root, "classification_metrics.json")}
