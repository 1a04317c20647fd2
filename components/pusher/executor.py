"""Pusher executor: copy a blessed model into the versioned model repository, optionally deploy it.

Re-checks the blessings itself (model blessing required, infra blessing when
given), so running it on an unblessed model pushes nothing. The push is atomic
(see ``common/model_repository.py``); the PushedModel artifact holds a
``PUSHED``/``NOT_PUSHED`` marker, ``push.json`` and, when a deployment was
asked for, ``inferenceservice.yaml`` (``kubectl apply -f`` it by hand if the
pipeline may not touch the cluster: ``deploy={"apply": False, ...}``).
No TensorFlow import: the SavedModel is copied as files.
"""

import json
import os

from kubetfx.components.common import blessing, fileio, layout, model_repository, provenance, report
from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.components.pusher import deploy_settings

PUSHED = "PUSHED"
NOT_PUSHED = "NOT_PUSHED"
PUSH_FILE = "push.json"
MANIFEST_FILE = "inferenceservice.yaml"
STALE_TEMP_S = 24 * 3600.0


def _blessing_lines(verdict) -> list[str]:
    if verdict is None:
        return []
    state = "blessed" if verdict.blessed else "NOT blessed"
    lines = [f"- **{verdict.kind} blessing**: {state} (`{verdict.directory}`)"]
    lines += [f"  - {reason}" for reason in verdict.reasons]
    return lines


def run(model_dir: str, model_blessing_dir: str, infra_blessing_dir: str | None, push_destination: str,
        model_name: str, pushed_model_dir: str, report_path: str | None = None, deploy: dict | None = None,
        *, statistics_dir: str = "", kube_api=None) -> dict:
    """Push the Model artifact's SavedModel (``layout.SERVING_MODEL_DIR``) to ``<push_destination>/<model_name>/<version>`` if blessed.

    ``deploy``: optional InferenceService settings (see ``deploy_settings.parse_settings``).
    ``statistics_dir``: StatisticsGen's artifact; its train split is pushed with the model (for the monitor).
    ``kube_api``: a CustomObjectsApi-like object (tests); default: the real one, built lazily.
    Returns the PushedModel metadata: pushed (1/0), destination, version, model_name,
    reason, previous_version and, when deployed, inference_service.
    """
    model_repository.check_model_name(model_name)
    if not push_destination or not str(push_destination).strip():
        raise ConfigError("push_destination is empty: give a directory (local or mounted) or a gs:// / s3:// URI")
    push_destination = str(push_destination).strip()
    settings = None
    if deploy:
        settings = deploy_settings.parse_settings(deploy, model_name)
        # Check before pushing that KServe will be able to load from this destination.
        deploy_settings.storage_uri(settings, push_destination, model_name, 1)

    model_verdict = blessing.read_blessing(model_blessing_dir)
    infra_verdict = blessing.read_blessing(infra_blessing_dir, infra=True) if infra_blessing_dir else None
    metadata = {
        "tfx_type": "PushedModel",
        "model_name": model_name,
        "push_destination": push_destination,
        "model_blessed": int(model_verdict.blessed),
        "infra_blessed": None if infra_verdict is None else int(infra_verdict.blessed),
    }

    if not model_verdict.blessed or (infra_verdict is not None and not infra_verdict.blessed):
        failed = [v for v in (model_verdict, infra_verdict) if v is not None and not v.blessed]
        reason = "; ".join(f"{v.kind} not blessed" + (f": {'; '.join(v.reasons)}" if v.reasons else "")
                           for v in failed)
        try:
            previous = model_repository.latest_version(push_destination, model_name)
        except (KubetfxError, OSError):  # the report only; not pushing does not need the repository
            previous = None
        metadata.update(pushed=0, destination="", version=None, previous_version=previous,
                        reason=f"not pushed: {reason}")
        _write_artifact(pushed_model_dir, metadata, manifest_yaml=None)
        if report_path:
            fileio.atomic_write(report_path, _report(metadata, model_verdict, infra_verdict))
        return metadata

    serving_dir = os.path.join(model_dir, layout.SERVING_MODEL_DIR)
    if not os.path.isfile(os.path.join(serving_dir, model_repository.SAVED_MODEL_FILE)):
        raise ConfigError(f"model artifact {model_dir} has no SavedModel: {serving_dir}/"
                          f"{model_repository.SAVED_MODEL_FILE} not found (expected the Trainer's output)")
    extra = {}
    for name in (model_repository.MODEL_METADATA_FILE, layout.SCHEMA_FILE):  # model facts + training schema
        if os.path.isfile(os.path.join(model_dir, name)):
            extra[name] = os.path.join(model_dir, name)
    if statistics_dir:
        training_stats = os.path.join(layout.split_dir(statistics_dir, "train"), layout.STATISTICS_FILE)
        if not os.path.isfile(training_stats):
            raise ConfigError(f"statistics artifact {statistics_dir} has no train split ({training_stats}); "
                              "the monitor needs it beside the pushed model")
        extra[model_repository.TRAINING_STATISTICS_FILE] = training_stats

    api = None
    if settings is not None and settings.apply:
        from kubetfx.components.pusher import kube_api as kubernetes_api

        api = kube_api if kube_api is not None else kubernetes_api.make_api()  # fail before pushing

    previous = model_repository.latest_version(push_destination, model_name)
    version, destination = model_repository.push(serving_dir, push_destination, model_name, extra)
    metadata.update(pushed=1, destination=destination, version=version, previous_version=previous,
                    reason=f"pushed version {version}: model blessed"
                           + (" and infra blessed" if infra_verdict is not None else ""),
                    # TFX's PushedModel property names, for tools that read them.
                    pushed_destination=destination, pushed_version=str(version))
    try:
        metadata["cleaned_temp_dirs"] = model_repository.cleanup_stale_temp_dirs(
            push_destination, model_name, STALE_TEMP_S)
    except (OSError, KubetfxError):
        metadata["cleaned_temp_dirs"] = []

    manifest_yaml = None
    if settings is not None:
        from kubetfx.components.pusher import inference_service
        from kubetfx.components.pusher import kube_api as kubernetes_api

        uri = deploy_settings.storage_uri(settings, push_destination, model_name, version)
        service = {"name": settings.name, "namespace": settings.namespace, "runtime": settings.runtime,
                   "deployment_mode": settings.deployment_mode, "storage_uri": uri}
        if settings.apply:
            try:
                result = kubernetes_api.deploy(settings, storage_uri=uri, model_name=model_name,
                                                model_version=version, api=api)
            except KubetfxError as err:
                raise type(err)(f"{err} (model version {version} was pushed to {destination}; "
                                "re-running pushes a new version)") from None
            manifest = result["manifest"]
            service.update(action=result["action"], canary_traffic_percent=result.get("canary_traffic_percent"),
                           previous_storage_uri=result.get("previous_storage_uri"))
        else:
            manifest = inference_service.build_inference_service(
                settings, storage_uri=uri, model_name=model_name, model_version=version,
                canary_traffic_percent=settings.canary_traffic_percent)
            service.update(action="manifest only (deploy.apply=false)",
                           canary_traffic_percent=settings.canary_traffic_percent)
        manifest_yaml = inference_service.to_yaml(manifest)
        metadata["inference_service"] = service

    metadata["package_versions"] = provenance.package_versions(("kubetfx", "kfp", "kserve", "kubernetes", "pyarrow"))
    _write_artifact(pushed_model_dir, metadata, manifest_yaml)
    if report_path:
        fileio.atomic_write(report_path, _report(metadata, model_verdict, infra_verdict))
    return metadata


def _write_artifact(pushed_model_dir: str, metadata: dict, manifest_yaml: str | None) -> None:
    with fileio.atomic_directory(pushed_model_dir) as temp_dir:
        with open(os.path.join(temp_dir, PUSHED if metadata["pushed"] else NOT_PUSHED), "w") as handle:
            handle.write(metadata["reason"] + "\n")
        with open(os.path.join(temp_dir, PUSH_FILE), "w") as handle:
            json.dump(metadata, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        if manifest_yaml is not None:
            with open(os.path.join(temp_dir, MANIFEST_FILE), "w") as handle:
                handle.write(manifest_yaml)


def _report(metadata: dict, model_verdict, infra_verdict) -> str:
    pushed = bool(metadata["pushed"])
    lines = ["# Pusher", "",
             f"**Decision**: {'pushed' if pushed else 'NOT pushed'} — {metadata['reason']}", "",
             "## Why", ""]
    lines += _blessing_lines(model_verdict)
    lines += _blessing_lines(infra_verdict) or ["- **infra blessing**: not given (only the model blessing counts)"]
    previous = metadata.get("previous_version")
    rows = [["model name", metadata["model_name"]],
            ["repository", metadata["push_destination"]],
            ["version", metadata["version"] if pushed else "–"],
            ["destination", f"`{metadata['destination']}`" if pushed else "–"],
            ["previous version", previous if previous is not None else "none"]]
    lines += ["", "## Model repository", "", report.table(["", ""], rows)]
    service = metadata.get("inference_service")
    if service:
        rows = [[key.replace("_", " "), "–" if value is None else value] for key, value in service.items()]
        lines += ["", "## KServe InferenceService", "", report.table(["", ""], rows), "",
                  f"The manifest is `{MANIFEST_FILE}` in the PushedModel artifact "
                  "(`kubectl apply -f` it to deploy by hand)."]
    if metadata.get("cleaned_temp_dirs"):
        lines += ["", f"Removed {len(metadata['cleaned_temp_dirs'])} leftover temp dir(s) of interrupted pushes."]
    return "\n".join(lines) + "\n"
