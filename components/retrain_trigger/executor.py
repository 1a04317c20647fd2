"""Start the newest version of a training pipeline through the KFP API, from inside the cluster.

The monitor pipeline runs this when the monitor decides to retrain. Inside a KFP pod the API
is at ``http://ml-pipeline.kubeflow:8888`` and, on multi-user Kubeflow, accepts the projected
service-account token at ``/var/run/secrets/kubeflow/pipelines/token``; both can be
overridden. The training pipeline resolves its ``{SPAN}`` input when it runs, so the run
trains on the newest span.
"""

import os
import time

from kubetfx.components.common.errors import ConfigError

IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow:8888"
PROJECTED_TOKEN = "/var/run/secrets/kubeflow/pipelines/token"


def run(pipeline_name: str, experiment: str, params: dict | None = None, host: str = "", namespace: str = "",
        token_file: str = "", service_account: str = "", reason: str = "", submitter=None) -> dict:
    """Start the run; returns its id and what was asked (the artifact metadata)."""
    from kubetfx.components.common.kfp_api import KfpConnection, KfpEndpoint

    if not pipeline_name:
        raise ConfigError("pipeline_name is empty: name the training pipeline to start (e.g. kubetfx-penguin)")
    token_file = token_file or (PROJECTED_TOKEN if os.path.isfile(PROJECTED_TOKEN) else "")
    if token_file and not os.path.isfile(token_file):
        raise ConfigError(f"retrain trigger: token file {token_file} does not exist")
    submitter = submitter or KfpConnection(KfpEndpoint(
        host=host or IN_CLUSTER_HOST, namespace=namespace, experiment=experiment or "kubetfx",
        service_account=service_account, token=f"file:{token_file}" if token_file else "none",
        where="retrain trigger"))
    run_name = f"{pipeline_name}-retrain-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = submitter.start_latest(pipeline_name, dict(params or {}), run_name)
    return {"tfx_type": "RetrainRun", "run_id": run_id, "run_name": run_name, "pipeline_name": pipeline_name,
            "experiment": experiment, "reason": reason}
