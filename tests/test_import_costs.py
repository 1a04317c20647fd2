"""Every KFP task is a fresh process: components that need no TensorFlow must not import it."""

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
from kubetfx.components.example_gen import component, executor as example_gen
from kubetfx.components.statistics_gen import component, executor as statistics_gen
from kubetfx.components.schema_gen import component, executor as schema_gen
from kubetfx.components.example_validator import component, executor as example_validator
from kubetfx.components.pusher import component, executor as pusher
from kubetfx.pipelines.penguin import data
root = sys.argv[1]
csv = data.write_span(root + "/data")
example_gen.run(csv, root + "/examples", label_column="species")
statistics_gen.run(root + "/examples", root + "/statistics")
schema_gen.run(root + "/statistics", root + "/schema", label_column="species")
example_validator.run(root + "/statistics", root + "/schema", root + "/anomalies")
heavy = ("tensorflow", "tensorflow_transform", "apache_beam", "tensorflow_model_analysis", "keras", "kserve")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_data_components_run_without_tensorflow_beam_or_kserve(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
