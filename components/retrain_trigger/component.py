"""KFP interface of the retrain trigger (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def retrain_trigger(
    pipeline_name: str,
    run: Output[Artifact],
    experiment: str = "kubetfx",
    params: dict = {},
    host: str = "",
    namespace: str = "",
    service_account: str = "",
):
    """Starts the newest version of the training pipeline ``pipeline_name`` (KFP API, in-cluster defaults)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.retrain_trigger import executor

    run.metadata.update(call(executor.run, pipeline_name=pipeline_name, experiment=experiment, params=params,
                             host=host, namespace=namespace, service_account=service_account))
