"""Run one component executor in a fresh process (as a KFP task does); measure wall time and peak RSS."""

import json
import subprocess
import sys
import time

_STEP = r"""
import json, resource, sys, time
started = time.time()
from kubetfx.components.{module} import executor
result = executor.run(**json.loads(sys.argv[1]))
print(json.dumps({{"seconds_in_process": time.time() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tensorflow_imported": "tensorflow" in sys.modules,
                  "result": result}}, default=str))
"""


def run_step(module: str, kwargs: dict, prefix: tuple = ()) -> dict:
    """``prefix``: a command that runs the step (e.g. in the Beam engines' network namespace)."""
    started = time.time()
    result = subprocess.run([*prefix, sys.executable, "-c", _STEP.format(module=module), json.dumps(kwargs)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{module} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["wall_seconds"] = time.time() - started
    return measured


def print_header() -> None:
    print(f"{'component':<20}{'wall s':>9}{'in-proc s':>11}{'peak RSS MB':>13}{'TF imported':>13}")


def print_row(module: str, measured: dict) -> None:
    print(f"{module:<20}{measured['wall_seconds']:>9.2f}{measured['seconds_in_process']:>11.2f}"
          f"{measured['peak_rss_mb']:>13.0f}{str(measured['tensorflow_imported']):>13}", flush=True)
