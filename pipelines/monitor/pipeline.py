"""The monitor pipeline: CanaryDecision and ModelMonitor on the logged predictions -> (retrain?) -> the training pipeline.

Schedule it like the training pipeline (`kubetfx schedule monitor --env prod`). CanaryDecision
looks at the Pusher's InferenceService: while a canary rollout is in progress it compares the
canary with the stable version on the logger sink's records (the environment's ``canary:``
settings: a mixture SPRT at ``alpha``) and promotes, rolls back (the Pusher's rollout patch) or
waits. When the monitor decides to retrain -- and no canary is still waiting -- the
RetrainTrigger starts the newest uploaded version of the training pipeline through the KFP API,
and that run trains on the newest ``{SPAN}``.
"""

from kfp import dsl

from kubetfx.components.common.image import component_image
from kubetfx.components.model_monitor.component import canary_rollout, model_monitor
from kubetfx.components.retrain_trigger.component import retrain_trigger
from kubetfx.pipelines.cluster import kubernetes_settings
from kubetfx.pipelines.config import PipelineConfig

PIPELINE_NAME = "kubetfx-monitor"
DESCRIPTION = "Prediction logs vs training data (skew, drift, schema anomalies, live quality); retrain when needed."

PARAMETER_HELP = {
    "prediction_log": "where the prediction log files are (the predictor's --prediction_log_dir, or the KServe "
                      "logger sink's --log_dir), as mounted in the pod",
    "model_repository": "the model repository the serving version was pushed to",
    "model_name": "the served model",
    "last_n": "monitor the newest N logged predictions (0: the time window start/end)",
    "start": "window start, ISO-8601 (empty: the oldest record)",
    "end": "window end, ISO-8601, exclusive (empty: now)",
    "labels": "ground truth arriving later: CSV/JSONL of request_id[,instance],label (empty: no quality check)",
    "training_pipeline": "the KFP pipeline to start when the monitor says retrain",
    "training_parameters": "parameters for that run (JSON object; empty: its defaults)",
    "experiment": "the KFP experiment the retraining run goes to",
    "canary": "the canary decision's test: alpha, margin, error_margin, latency_margin, prediction_margin, "
              "min_samples (JSON object; an environment's compile bakes in its canary: settings)",
    "deploy": "the Pusher's InferenceService settings (name, namespace; an environment's compile fills them)",
}


def make(config: PipelineConfig | None = None, model_name: str = "penguin"):
    config = config or PipelineConfig()
    image = component_image()

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def monitor_pipeline(
        prediction_log: str,
        model_repository: str,
        model_name: str = model_name,
        last_n: int = 0,
        start: str = "",
        end: str = "",
        labels: str = "",
        training_pipeline: str = f"kubetfx-{model_name}",
        training_parameters: dict = {},
        experiment: str = "kubetfx",
        canary: dict = {},
        deploy: dict = {},
    ):
        """The parameters are described in PARAMETER_HELP (`kubetfx params monitor`)."""
        rollout = canary_rollout(prediction_log=prediction_log, model_repository=model_repository,
                                 model_name=model_name, labels=labels, canary=canary, deploy=deploy)
        rollout.set_display_name("CanaryDecision").set_container_image(image)
        rollout.set_caching_options(enable_caching=False)
        kubernetes_settings.mount_model_repository(rollout, config.model_repository)
        kubernetes_settings.mount_prediction_log(rollout, config.prediction_log)
        watched = model_monitor(prediction_log=prediction_log, model_repository=model_repository,
                                model_name=model_name, last_n=last_n, start=start, end=end, labels=labels)
        watched.set_display_name("ModelMonitor").set_container_image(image)
        watched.set_caching_options(enable_caching=False)  # the log grows; a cached verdict is a stale one
        kubernetes_settings.mount_model_repository(watched, config.model_repository)
        kubernetes_settings.mount_prediction_log(watched, config.prediction_log)
        watched.after(rollout)
        with dsl.If(rollout.outputs["Output"] == False, name="no-canary-waiting"):  # noqa: E712 - KFP condition
            with dsl.If(watched.outputs["Output"] == True, name="retrain"):  # noqa: E712 - KFP condition
                trigger = retrain_trigger(pipeline_name=training_pipeline, params=training_parameters,
                                          experiment=experiment, namespace=config.kfp.namespace,
                                          service_account=config.kfp.service_account)
                trigger.set_display_name("RetrainTrigger").set_container_image(image)
                trigger.set_caching_options(enable_caching=False)

    return monitor_pipeline
