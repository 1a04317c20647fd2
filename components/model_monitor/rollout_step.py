"""The canary step: monitor a rollout in progress, decide it, and apply the decision with the Pusher's rollout code.

A rollout is an InferenceService document mid-canary: on a cluster the one the Pusher rolled out
with ``canary_traffic_percent`` (its annotations name the new and the previous version), locally
the predictor's rollout document (``--canary_percent``; ``pusher/local_rollout.py``). Both go the
same way: the monitor on the records logged since the canary's push, with the two versions
compared (``executor.run_for_model`` + ``canary.py``), then ``canary.rollout_decision`` and
``rollout.apply_rollout_decision`` -- the Pusher's own patch, to the cluster or the local file.
"""

from __future__ import annotations

from kubetfx.components.model_monitor import canary as canary_lib, executor
from kubetfx.components.pusher import local_rollout, rollout

ARTIFACT_TYPE = "CanaryRollout"


def monitor_rollout(service: dict | None, prediction_log_dir: str, model_repository_base: str, model_name: str,
                    output_dir: str, settings: canary_lib.CanarySettings, deploy_settings, api,
                    **monitor_kwargs) -> dict | None:
    """The monitor's result with the canary verdict and what was applied (``result["rollout"]``); None when no
    canary is in progress."""
    stable, canary = local_rollout.versions(service or {})
    if local_rollout.state(service) != local_rollout.CANARY or stable is None or canary is None:
        return None
    training = {str(version): executor.serving_version_files(model_repository_base, model_name, version)[1]["statistics"]
                for version in (stable, canary)}
    result = executor.run_for_model(prediction_log_dir, model_repository_base, model_name, output_dir, version=canary,
                                    canary={"stable": stable, "canary": canary, "settings": settings,
                                            "training": training}, **monitor_kwargs)
    decision = canary_lib.rollout_decision(result["canary"], service)
    applied = rollout.apply_rollout_decision(decision, deploy_settings, api)
    result["rollout"] = {**decision.to_dict(), "applied": applied}
    return result


def run_local(prediction_log_dir: str, model_repository: str, model_name: str, output_dir: str,
              settings: canary_lib.CanarySettings, **monitor_kwargs) -> dict | None:
    """`kubetfx monitor` during a local canary (`make serve CANARY=P`): None when none is in progress."""
    return monitor_rollout(local_rollout.read(model_repository, model_name), prediction_log_dir, model_repository,
                           model_name, output_dir, settings, local_rollout.settings(model_name),
                           local_rollout.LocalInferenceServices(model_repository), **monitor_kwargs)


def run_cluster(prediction_log_dir: str, model_repository_base: str, model_name: str, output_dir: str, *,
                canary: dict | None = None, deploy: dict | None = None, labels: str = "", report_path: str | None = None,
                api=None) -> dict:
    """The monitor pipeline's canary step, on the logger sink's records and the Pusher's InferenceService."""
    from kubetfx.components.pusher import deploy_settings as deploy_lib
    from kubetfx.components.pusher import kube_api

    settings = canary_lib.CanarySettings(**(canary or {}))
    target = deploy_lib.parse_settings(deploy, model_name) if deploy else None
    target = target or deploy_lib.DeploySettings(name=deploy_lib.default_name(model_name),
                                                 namespace=deploy_lib.default_namespace())
    api = api if api is not None else kube_api.make_api()
    service = kube_api.get_inference_service(target, api)
    result = monitor_rollout(service, prediction_log_dir, model_repository_base, model_name, output_dir, settings,
                             target, api, labels=labels, report_path=report_path, min_records=1)
    if result is None:
        reason = f"no canary rollout in progress on InferenceService {target.namespace}/{target.name}"
        if report_path:
            from kubetfx.components.common import fileio

            fileio.atomic_write(report_path, f"<!DOCTYPE html><html><body><p>{reason}</p></body></html>\n")
        return {"tfx_type": ARTIFACT_TYPE, "action": "none", "reason": reason}
    return {"tfx_type": ARTIFACT_TYPE, **result["rollout"], "canary": result["canary"]}
