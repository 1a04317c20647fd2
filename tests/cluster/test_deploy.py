"""`kubetfx deploy` (make deploy) against the real API server: server-side apply, dry runs, re-applies.

Who owns what (docs/cluster.md): `make deploy` applies the environment's overlay as field manager
``kubetfx-deploy``; the InferenceService is the Pusher's alone (field manager ``kubetfx-pusher``):
its template lives beside the overlay (``<overlay>/serving``), never in what kubectl applies, so
neither `make deploy` nor a raw ``kubectl apply -k`` of the overlay can conflict with a pushed
version or roll it back.
"""

import json
import os

import pytest

from kubetfx.components.pusher import inference_service, kube_api
from kubetfx.pipelines import config as pipeline_config
from kubetfx.pipelines.cluster import kustomize

from helpers.managed_fields import entry, managers, owners, spec_writers
from helpers.model_files import make_saved_model

ENVIRONMENTS = {"dev": "kubetfx-dev", "prod": "kubetfx"}


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_dry_run_on_an_empty_cluster_checks_everything_and_creates_nothing(cluster, kserve_crds, env):
    namespace = ENVIRONMENTS[env]
    cluster.delete_namespace(namespace)
    result = cluster.kubetfx("deploy", "--env", env, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"namespace/{namespace}" in result.stdout and "(server dry run)" in result.stdout
    assert f"namespace {namespace} does not exist yet" in result.stdout
    assert "servingruntime.serving.kserve.io/kubetfx-predictor" in result.stdout
    assert cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0  # nothing created


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_deploy_applies_every_object_server_side_and_again_without_change(cluster, kserve_crds, env):
    namespace = ENVIRONMENTS[env]
    cluster.delete_namespace(namespace)
    objects = kustomize.render(pipeline_config.load_environment(env).manifests_path())
    try:
        first = cluster.kubetfx("deploy", "--env", env)
        assert first.returncode == 0, first.stderr
        versions = {}
        for obj in objects:
            kind, name = obj["kind"].lower(), obj["metadata"]["name"]
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            resource = f"{kind}.{group}" if group and group not in ("apps", "v1") else kind
            live = cluster.get(resource, name, *(["-n", namespace] if kind != "namespace" else []))
            assert managers(live).get(kustomize.FIELD_MANAGER) == "Apply", (kind, name, managers(live))
            versions[(kind, name)] = entry(live, kustomize.FIELD_MANAGER)
        assert not any(o["kind"] == inference_service.KIND for o in objects)  # the Pusher's, not the overlay's
        again = cluster.kubetfx("deploy", "--env", env)
        assert again.returncode == 0, again.stderr
        dry = cluster.kubetfx("deploy", "--env", env, "--dry-run")  # the namespace exists now: all server-side
        assert dry.returncode == 0 and "does not exist yet" not in dry.stdout, dry.stdout + dry.stderr
        for (kind, name), before in versions.items():  # an unchanged apply is a no-op: same fields, same time
            live = cluster.get(kind, name, *(["-n", namespace] if kind != "namespace" else []))
            assert entry(live, kustomize.FIELD_MANAGER) == before, f"{kind}/{name} changed on a second apply"
    finally:
        cluster.delete_namespace(namespace)


def _push(tmp_path, api, version_seed: int, deploy: dict) -> dict:
    from kubetfx.components.common import blessing
    from kubetfx.components.pusher import executor

    model = tmp_path / f"model-{version_seed}"
    make_saved_model(model / "Format-Serving", seed=version_seed)
    blessed = str(tmp_path / f"blessing-{version_seed}")
    blessing.write_blessing(blessed, True, ["accuracy above threshold"])
    return executor.run(model_dir=str(model), model_blessing_dir=blessed, infra_blessing_dir=None,
                        push_destination=str(tmp_path / "repository"), model_name="penguin",
                        pushed_model_dir=str(tmp_path / f"pushed-{version_seed}"), deploy=deploy, kube_api=api)


def test_deploy_after_the_pusher_pushed_v2_neither_conflicts_nor_rolls_back(cluster, kserve_crds, tmp_path,
                                                                             runner_api):
    from kubetfx.pipelines.cluster import serving_template

    config = pipeline_config.load_environment("dev")
    cluster.delete_namespace("kubetfx-dev")
    try:
        assert cluster.kubetfx("deploy", "--env", "dev").returncode == 0
        template = kustomize.render(config.serving_template_path())
        deploy = serving_template.deploy_settings(template, model_name="penguin", apply=True,
                                                  storage_uri_base=config.model_repository.storage_uri_base(),
                                                  where="dev")
        api = runner_api("kubetfx-dev", tmp_path)
        assert _push(tmp_path, api, 1, deploy)["version"] == 1
        assert _push(tmp_path, api, 2, deploy)["version"] == 2
        uri = "pvc://kubetfx-model-repository/penguin/2"
        assert cluster.get("inferenceservice", "penguin", "-n", "kubetfx-dev")["spec"]["predictor"]["model"][
            "storageUri"] == uri

        assert cluster.kubetfx("deploy", "--env", "dev").returncode == 0
        overlay = config.manifests_path()
        ssa = cluster.kubectl("apply", "--server-side", "-k", overlay, check=False)
        assert ssa.returncode == 0 and "conflict" not in ssa.stderr.lower(), ssa.stderr
        plain = cluster.kubectl("apply", "-k", overlay, check=False)
        assert plain.returncode == 0, plain.stderr

        live = cluster.get("inferenceservice", "penguin", "-n", "kubetfx-dev")
        assert live["spec"]["predictor"]["model"]["storageUri"] == uri  # not rolled back
        assert live["metadata"]["annotations"][inference_service.MODEL_VERSION] == "2"
        assert owners(live, "spec", "predictor", "model", "storageUri") == [kube_api.FIELD_MANAGER]
        assert spec_writers(live) == {kube_api.FIELD_MANAGER}
    finally:
        cluster.delete_namespace("kubetfx-dev")


def test_a_refused_apply_names_the_object_and_the_reason_in_one_line(cluster, kserve_crds, tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: [pvc.yaml]\nnamespace: default\n")
    (overlay / "pvc.yaml").write_text(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "broken"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5 Gi"}}}}))
    config = tmp_path / "env.yaml"
    config.write_text(f"manifests: {os.fspath(overlay)}\n")
    result = cluster.kubetfx("deploy", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("kubetfx: ") and "persistentvolumeclaim" in lines[0].lower() and "broken" in lines[0]
    assert "kubeconfig" not in result.stderr  # the cluster answered: the context is not the problem
