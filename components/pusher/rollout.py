"""Canary rollouts of a new model version: promote, roll back or wait, decided from the InferenceService's status.

Canary rollouts (``canary_traffic_percent``) need Knative (``Serverless``) mode: on update the
new revision gets that share of traffic and the previous rolled-out revision the rest.
:func:`decide_rollout` reads the object and says promote / rollback / wait; :func:`apply_rollout_decision`
patches it as the Pusher (kube_api.py).
"""

import datetime as dt
import time
from dataclasses import dataclass

from kubetfx.components.pusher import inference_service
from kubetfx.components.pusher import kube_api
from kubetfx.components.pusher.deploy_settings import DeploySettings

FAILURE_CONDITIONS = ("PredictorConfigurationReady", "LatestDeploymentReady", "PredictorReady", "Ready")
FAILED_MODEL_STATES = ("BlockedByFailedLoad", "InvalidSpec")


@dataclass
class RolloutDecision:
    """``action``: promote | rollback | wait | none (no canary in progress)."""

    action: str
    reason: str
    patch: dict | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "patch": self.patch}


def _parse_time(value) -> float | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def promote_patch() -> dict:
    """All traffic to the latest revision: drop ``canaryTrafficPercent`` and any earlier rollback's reason."""
    return {"metadata": {"annotations": {inference_service.ROLLOUT: "promoted", inference_service.ROLLOUT_REASON: None}},
            "spec": {"predictor": {"canaryTrafficPercent": None}}}


def rollback_patch(previous_storage_uri: str | None, previous_version: str | None, reason: str) -> dict:
    """All traffic back to the previous rolled-out revision, and the spec back to the previous model.

    ``canaryTrafficPercent: 0`` moves traffic at once; restoring ``storageUri``
    makes the spec say what is served, so removing the canary later cannot
    promote the bad version.
    """
    predictor = {"canaryTrafficPercent": 0}
    if previous_storage_uri:
        predictor["model"] = {"storageUri": previous_storage_uri}
    annotations = {inference_service.ROLLOUT: "rolled-back", inference_service.ROLLOUT_REASON: reason[:1000]}
    if previous_version:
        predictor["annotations"] = {inference_service.MODEL_VERSION: str(previous_version)}
        annotations[inference_service.MODEL_VERSION] = str(previous_version)
    return {"metadata": {"annotations": annotations}, "spec": {"predictor": predictor}}


def decide_rollout(service: dict, *, now: float | None = None, progress_deadline_s: float = 600.0,
                   min_ready_s: float = 0.0, canary_healthy: bool | None = None) -> RolloutDecision:
    """Read an InferenceService (dict as returned by the API) and decide the canary's fate.

    * rollback: a failure condition is ``False`` (e.g. ``LatestDeploymentReady``
      with reason RevisionFailed), the model status is BlockedByFailedLoad /
      InvalidSpec, the new revision is not ready ``progress_deadline_s`` after the
      rollout started, or ``canary_healthy`` is False (your metrics check);
    * wait: the controller has not reconciled the latest generation, the new
      revision is not ready yet, traffic is not yet split as asked, or it has
      been Ready for less than ``min_ready_s``;
    * promote: the new revision is ready, carries the canary share, and nothing failed;
    * none: no canary in progress (``canaryTrafficPercent`` unset, 100 or 0).
    """
    now = time.time() if now is None else now
    metadata = service.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = service.get("status") or {}
    percent = inference_service.get_path(service, "spec", "predictor", "canaryTrafficPercent")
    if percent is None or percent >= 100:
        return RolloutDecision("none", "no canary rollout in progress (canaryTrafficPercent not set)")
    if percent == 0:
        return RolloutDecision("none", "canary traffic is 0% (rolled back or paused)")

    def rollback(reason: str) -> RolloutDecision:
        return RolloutDecision("rollback", reason, rollback_patch(
            annotations.get(inference_service.PREVIOUS_STORAGE_URI), annotations.get(inference_service.PREVIOUS_MODEL_VERSION), reason))

    generation, observed = metadata.get("generation"), status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return RolloutDecision("wait", f"the KServe controller has not reconciled generation {generation} yet "
                                       f"(observed {observed})")
    predictor = inference_service.get_path(status, "components", "predictor", default={}) or {}
    created, ready = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    model_state = inference_service.get_path(status, "modelStatus", "transitionStatus")
    if model_state in FAILED_MODEL_STATES:
        failure = inference_service.get_path(status, "modelStatus", "lastFailureInfo", default={}) or {}
        detail = ": ".join(str(x) for x in (failure.get("reason"), failure.get("message")) if x)
        return rollback(f"model status {model_state}" + (f" ({detail})" if detail else ""))
    for kind in FAILURE_CONDITIONS:
        condition = conditions.get(kind)
        if condition and condition.get("status") == "False":
            detail = ": ".join(str(x) for x in (condition.get("reason"), condition.get("message")) if x)
            return rollback(f"condition {kind} is False" + (f" ({detail})" if detail else "")
                            + (f"; revision {created}" if created else ""))
    started = _parse_time(annotations.get(inference_service.ROLLOUT_STARTED))
    if not created or created != ready:
        elapsed = None if started is None else now - started
        what = f"revision {created}" if created else "the new revision"
        if elapsed is not None and elapsed > progress_deadline_s:
            return rollback(f"{what} is not ready {elapsed:.0f} s after the rollout started "
                            f"(deadline {progress_deadline_s:.0f} s; latest ready: {ready})")
        return RolloutDecision("wait", f"{what} is not ready yet (latest ready: {ready})")
    traffic = predictor.get("traffic") or []
    entry = next((t for t in traffic if t.get("revisionName") == created), None)
    share = entry.get("percent") if entry else None
    if share != percent:
        return RolloutDecision("wait", f"traffic not split yet: revision {created} has {share}% , "
                                       f"canary asks for {percent}%")
    if canary_healthy is False:
        return rollback(f"canary revision {created} failed the health check at {percent}% traffic")
    ready_condition = conditions.get("Ready") or conditions.get("PredictorReady")
    if not ready_condition or ready_condition.get("status") != "True":
        return RolloutDecision("wait", f"InferenceService is not Ready yet "
                                       f"({(ready_condition or {}).get('reason') or 'no Ready condition'})")
    since = max(t for t in (started, _parse_time(ready_condition.get("lastTransitionTime")), 0.0) if t is not None)
    if min_ready_s and now - since < min_ready_s:
        return RolloutDecision("wait", f"canary revision {created} serves {percent}%; observed for "
                                       f"{max(0.0, now - since):.0f} s of the required {min_ready_s:.0f} s")
    return RolloutDecision("promote", f"canary revision {created} is ready and serves {percent}% without failures",
                           promote_patch())


def apply_rollout_decision(decision: RolloutDecision, settings: DeploySettings, api=None) -> bool:
    """Patch the InferenceService for promote/rollback; False for wait/none."""
    if decision.action not in ("promote", "rollback") or not decision.patch:
        return False
    kube_api.patch_inference_service(settings, decision.patch, f"{decision.action} of", api)
    return True
