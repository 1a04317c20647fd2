"""KFP interface of the model monitor (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def model_monitor(
    prediction_log: str,
    model_repository: str,
    model_name: str,
    anomalies: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
    version: int = 0,
    start: str = "",
    end: str = "",
    last_n: int = 0,
    labels: str = "",
    linf_threshold: float = 0.2,
    jsd_threshold: float = 0.1,
    quality_tolerance: float = 0.05,
    min_records: int = 100,
) -> bool:
    """Logged predictions vs the serving version's training data; True when the model should be retrained."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.model_monitor import executor

    result = call(
        executor.run_for_model, prediction_log_dir=prediction_log, model_repository_base=model_repository,
        model_name=model_name, output_dir=anomalies.path, version=version, start=start, end=end, last_n=last_n,
        labels=labels, linf_threshold=linf_threshold, jsd_threshold=jsd_threshold,
        quality_tolerance=quality_tolerance, min_records=min_records, report_path=report.path)
    anomalies.metadata.update(result)
    metrics.log_metric("records", result["window"]["records"])
    metrics.log_metric("retrain", result["retrain"])
    for feature, value in result["skew"].items():
        metrics.log_metric(f"skew_{feature}", value)
    return bool(result["retrain"])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def canary_rollout(
    prediction_log: str,
    model_repository: str,
    model_name: str,
    decision: Output[Artifact],
    report: Output[HTML],
    labels: str = "",
    canary: dict = {},
    deploy: dict = {},
) -> bool:
    """A canary rollout in progress vs its stable version on the logged traffic: promote, roll back (the Pusher's
    rollout patch) or wait. True while the rollout still waits (the monitor pipeline then holds back a retrain)."""
    from kubetfx.components.common.entrypoint import call
    from kubetfx.components.model_monitor import rollout_step

    result = call(rollout_step.run_cluster, prediction_log_dir=prediction_log, model_repository_base=model_repository,
                  model_name=model_name, output_dir=decision.path, canary=canary, deploy=deploy, labels=labels,
                  report_path=report.path)
    decision.metadata.update({k: v for k, v in result.items() if k != "canary"})
    if "canary" in result:
        decision.metadata["evidence"] = result["canary"]["evidence"]
    return result["action"] == "wait"
