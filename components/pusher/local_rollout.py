"""The local stand-in for the Pusher's InferenceService: a rollout file the predictor follows and decisions patch.

With ``--canary_percent P`` (``make serve CANARY=P``) the predictor loads a newly pushed version
beside the served one, sends it P% of the requests, and writes ``<repository>/<model>/rollout.json``:
an InferenceService document as KServe holds one mid-rollout (``spec.predictor.canaryTrafficPercent``,
``model.storageUri``, the ``kubetfx.io/`` annotations the Pusher sets). A rollout decision
(``rollout.py``: :func:`~kubetfx.components.pusher.rollout.apply_rollout_decision`) patches it with
the same JSON merge patch it sends a cluster, through :class:`LocalInferenceServices` -- the two
``CustomObjectsApi`` calls ``kube_api`` makes -- and the predictor reads it at every poll:
``canaryTrafficPercent`` gone is a promotion, ``0`` a rollback.
"""

from __future__ import annotations

import json
import os
import time

from kubetfx.components.common import fileio, model_repository
from kubetfx.components.pusher import inference_service as isvc
from kubetfx.components.pusher.deploy_settings import DeploySettings

ROLLOUT_FILE = "rollout.json"
NAMESPACE = "local"
CANARY, PROMOTED, ROLLED_BACK = "canary", "promoted", "rolled-back"


def path(repository: str, model_name: str) -> str:
    return os.path.join(repository, model_name, ROLLOUT_FILE)


def read(repository: str, model_name: str) -> dict | None:
    """The rollout document, or None when no canary was ever started (or the file is unreadable)."""
    try:
        with open(path(repository, model_name), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write(repository: str, model_name: str, service: dict) -> None:
    fileio.atomic_write(path(repository, model_name), json.dumps(service, indent=2, sort_keys=True))


def start_canary(repository: str, model_name: str, stable: int, canary: int, percent: int,
                 now: float | None = None) -> dict:
    """Write the document of a rollout that sends ``percent``% to ``canary`` and the rest to ``stable``."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    service = {"apiVersion": isvc.API_VERSION, "kind": isvc.KIND,
               "metadata": {"name": model_name, "namespace": NAMESPACE, "annotations": {
                   isvc.MODEL_VERSION: str(canary), isvc.PREVIOUS_MODEL_VERSION: str(stable),
                   isvc.PREVIOUS_STORAGE_URI: model_repository.version_path(repository, model_name, stable),
                   isvc.ROLLOUT: CANARY, isvc.ROLLOUT_STARTED: started}},
               "spec": {"predictor": {"canaryTrafficPercent": int(percent), "model": {
                   "storageUri": model_repository.version_path(repository, model_name, canary)}}}}
    _write(repository, model_name, service)
    return service


def versions(service: dict) -> tuple[int | None, int | None]:
    """(stable, canary) versions the document names."""
    annotations = isvc.get_path(service, "metadata", "annotations", default={}) or {}

    def number(key):
        value = str(annotations.get(key) or "")
        return int(value) if value.isdigit() else None

    return number(isvc.PREVIOUS_MODEL_VERSION), number(isvc.MODEL_VERSION)


def state(service: dict | None) -> str | None:
    """canary (traffic split), promoted (no canary share: the new version takes all), rolled-back (0%), or None."""
    if not service:
        return None
    percent = isvc.get_path(service, "spec", "predictor", "canaryTrafficPercent")
    if percent is None or percent >= 100:
        return PROMOTED
    return ROLLED_BACK if percent <= 0 else CANARY


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: objects merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def settings(model_name: str) -> DeploySettings:
    """What :func:`~kubetfx.components.pusher.rollout.apply_rollout_decision` addresses locally."""
    return DeploySettings(name=model_name, namespace=NAMESPACE)


class LocalInferenceServices:
    """The ``CustomObjectsApi`` calls the Pusher's rollout code makes, on the local rollout files of ``repository``."""

    def __init__(self, repository: str):
        self.repository = repository

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return read(self.repository, name)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **options):
        service = merge_patch(read(self.repository, name) or {}, body)
        _write(self.repository, name, service)
        return service
