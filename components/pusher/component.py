"""KFP interface of the Pusher (logic: executor.py; KServe: deploy_settings, inference_service, kube_api, rollout)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def pusher(
    model: Input[Model],
    model_blessing: Input[Artifact],
    pushed_model: Output[Artifact],
    report: Output[Markdown],
    push_destination: str,
    model_name: str,
    infra_blessing: Input[Artifact] = None,
    statistics: Input[Artifact] = None,
    deploy: dict = {},
):
    """Pushes a blessed model to <push_destination>/<model_name>/<version>/; optionally deploys it on KServe."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.pusher import executor

    pushed_model.metadata.update(call(
        executor.run, model_dir=model.path, model_blessing_dir=model_blessing.path,
        infra_blessing_dir=infra_blessing.path if infra_blessing is not None else "",
        push_destination=push_destination, model_name=model_name, pushed_model_dir=pushed_model.path,
        report_path=report.path, deploy=deploy or None,
        statistics_dir=statistics.path if statistics is not None else ""))
