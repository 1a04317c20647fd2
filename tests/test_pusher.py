"""Pusher on real directories: blessings, pushes, failures, the PushedModel artifact, KServe manifests."""

import json
import os

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubetfx.components.common import blessing, model_repository
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.pusher import executor, inference_service, kube_api

from helpers.kube_fakes import RecordingCustomObjectsApi
from helpers.model_files import make_saved_model, tree

MODEL_JSON = {"problem_type": "multiclass_classification", "label": "species",
              "class_names": ["Adelie", "Chinstrap", "Gentoo"]}


@pytest.fixture
def model_dir(tmp_path):
    """A Trainer Model artifact: Format-Serving/ SavedModel + kubetfx_model.json."""
    directory = tmp_path / "model"
    make_saved_model(directory / "Format-Serving")
    (directory / "kubetfx_model.json").write_text(json.dumps(MODEL_JSON))
    return str(directory)


@pytest.fixture
def blessed(tmp_path):
    directory = str(tmp_path / "blessing")
    blessing.write_blessing(directory, True, ["accuracy 0.97 >= 0.9", "no regression vs baseline 1"])
    return directory


@pytest.fixture
def infra_blessed(tmp_path):
    directory = str(tmp_path / "infra")
    blessing.write_blessing(directory, True, "loaded and answered 10 requests", infra=True)
    return directory


@pytest.fixture
def out(tmp_path):
    """Output paths of one run: out()['pushed'], out()['report']; a fresh pair per call."""
    counter = iter(range(100))

    def _paths():
        index = next(counter)
        return {"pushed": str(tmp_path / f"pushed-{index}"), "report": str(tmp_path / f"report-{index}.md")}

    return _paths


def run(model_dir, blessing_dir, infra_dir, destination, paths, **kwargs):
    return executor.run(model_dir=model_dir, model_blessing_dir=blessing_dir, infra_blessing_dir=infra_dir,
                        push_destination=destination, model_name="penguin", pushed_model_dir=paths["pushed"],
                        report_path=paths["report"], **kwargs)


# ---------------------------------------------------------------------------
# Blessing markers


def test_blessing_markers_round_trip(tmp_path):
    model, infra = str(tmp_path / "b"), str(tmp_path / "i")
    blessing.write_blessing(model, False, ["accuracy 0.71 < 0.9"], details={"accuracy": 0.71})
    blessing.write_blessing(infra, True, [], infra=True)
    assert sorted(os.listdir(model)) == ["NOT_BLESSED", "blessing.json"]
    assert os.path.getsize(os.path.join(model, "NOT_BLESSED")) == 0  # TFX markers are empty files
    assert blessing.is_blessed(model) is False and blessing.is_infra_blessed(infra) is True
    verdict = blessing.read_blessing(model)
    assert verdict.reasons == ["accuracy 0.71 < 0.9"] and verdict.details == {"accuracy": 0.71}
    with pytest.raises(ConfigError, match="refusing"):
        blessing.write_blessing(model, True)


def test_blessing_dir_without_marker_is_a_config_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty}.*neither of BLESSED and NOT_BLESSED"):
        blessing.is_blessed(str(empty))
    with pytest.raises(ConfigError, match="INFRA_BLESSED"):
        blessing.is_infra_blessed(str(empty))
    (empty / "BLESSED").touch()
    (empty / "NOT_BLESSED").touch()
    with pytest.raises(ConfigError, match="both"):
        blessing.is_blessed(str(empty))
    with pytest.raises(ConfigError, match="does not exist"):
        blessing.is_blessed(str(tmp_path / "missing"))


def test_blessing_reasons_from_message_or_unreadable_json(tmp_path):
    directory = tmp_path / "b"
    directory.mkdir()
    (directory / "BLESSED").touch()  # a plain TFX blessing: no reasons
    assert blessing.read_blessing(str(directory)).reasons == []
    (directory / "blessing.json").write_text('{"message": "validation_ok"}')
    assert blessing.read_blessing(str(directory)).reasons == ["validation_ok"]
    (directory / "blessing.json").write_text("{not json")
    verdict = blessing.read_blessing(str(directory))
    assert verdict.blessed and "could not read" in verdict.reasons[0]


# ---------------------------------------------------------------------------
# Pushing


def test_blessed_model_is_pushed(model_dir, blessed, infra_blessed, tmp_path, out):
    base = str(tmp_path / "serving")
    paths = out()
    meta = run(model_dir, blessed, infra_blessed, base, paths)
    version_dir = os.path.join(base, "penguin", "1")
    assert meta["pushed"] == 1 and meta["version"] == 1 and meta["destination"] == version_dir
    assert meta["model_name"] == "penguin" and meta["previous_version"] is None
    assert meta["pushed_destination"] == version_dir and meta["pushed_version"] == "1"  # TFX property names
    assert "inference_service" not in meta
    copied = tree(version_dir)
    assert json.loads(copied.pop("kubetfx_model.json")) == MODEL_JSON
    assert copied == tree(os.path.join(model_dir, "Format-Serving"))

    assert sorted(os.listdir(paths["pushed"])) == ["PUSHED", "push.json"]
    with open(os.path.join(paths["pushed"], "push.json")) as handle:
        assert json.load(handle)["destination"] == version_dir
    report = open(paths["report"]).read()
    assert "pushed" in report and "accuracy 0.97 >= 0.9" in report and "loaded and answered 10 requests" in report
    assert version_dir in report and "| previous version | none |" in report

    paths = out()
    meta = run(model_dir, blessed, infra_blessed, base, paths)
    assert meta["version"] == 2 and meta["previous_version"] == 1
    assert "| previous version | 1 |" in open(paths["report"]).read()
    assert model_repository.list_versions(base, "penguin") == [1, 2]


def test_the_training_statistics_travel_with_the_model(model_dir, blessed, infra_blessed, tmp_path, out):
    """The monitor compares live requests with them: they sit beside schema.pbtxt in the version dir."""
    statistics = tmp_path / "statistics"
    (statistics / "Split-train").mkdir(parents=True)
    (statistics / "Split-train" / "FeatureStats.pb").write_bytes(b"train-stats")
    base = str(tmp_path / "serving")
    meta = run(model_dir, blessed, infra_blessed, base, out(), statistics_dir=str(statistics))
    with open(os.path.join(meta["destination"], model_repository.TRAINING_STATISTICS_FILE), "rb") as handle:
        assert handle.read() == b"train-stats"
    (statistics / "Split-train" / "FeatureStats.pb").unlink()
    with pytest.raises(ConfigError, match="has no train split"):
        run(model_dir, blessed, infra_blessed, base, out(), statistics_dir=str(statistics))
    assert model_repository.list_versions(base, "penguin") == [1]  # the failed push left nothing behind


def test_unblessed_model_is_not_pushed(model_dir, tmp_path, out, infra_blessed):
    rejected = str(tmp_path / "rejected")
    blessing.write_blessing(rejected, False, ["accuracy 0.71 < threshold 0.9"])
    base = str(tmp_path / "serving")
    paths = out()
    meta = run(model_dir, rejected, infra_blessed, base, paths, deploy={"storage_uri_base": "pvc://m/r"})
    assert meta["pushed"] == 0 and meta["version"] is None and meta["destination"] == ""
    assert "model not blessed: accuracy 0.71 < threshold 0.9" in meta["reason"]
    assert not os.path.exists(base)  # nothing pushed, nothing deployed
    assert sorted(os.listdir(paths["pushed"])) == ["NOT_PUSHED", "push.json"]
    report = open(paths["report"]).read()
    assert "NOT pushed" in report and "accuracy 0.71 < threshold 0.9" in report


def test_infra_not_blessed_blocks_the_push(model_dir, blessed, tmp_path, out):
    infra = str(tmp_path / "infra-bad")
    blessing.write_blessing(infra, False, "model server did not become ready in 60 s", infra=True)
    base = str(tmp_path / "serving")
    meta = run(model_dir, blessed, infra, base, out())
    assert meta["pushed"] == 0 and "infra not blessed: model server did not become ready" in meta["reason"]
    assert model_repository.list_versions(base, "penguin") == []


@pytest.mark.parametrize("infra_dir", [None, ""])
def test_without_infra_blessing_only_the_model_blessing_counts(model_dir, blessed, tmp_path, out, infra_dir):
    paths = out()
    meta = run(model_dir, blessed, infra_dir, str(tmp_path / "serving"), paths)
    assert meta["pushed"] == 1 and meta["infra_blessed"] is None
    assert "infra blessing**: not given" in open(paths["report"]).read()


def test_missing_blessing_marker_is_a_config_error(model_dir, tmp_path, out):
    empty = tmp_path / "blessing-empty"
    empty.mkdir()
    paths = out()
    with pytest.raises(ConfigError, match=str(empty)):
        run(model_dir, str(empty), None, str(tmp_path / "serving"), paths)
    assert not os.path.exists(paths["pushed"])


def test_model_without_saved_model_is_a_config_error_naming_it(tmp_path, blessed, out):
    model = tmp_path / "model-empty"
    (model / "Format-Serving" / "variables").mkdir(parents=True)
    paths = out()
    with pytest.raises(ConfigError, match=f"{model}/Format-Serving/saved_model.pb not found"):
        run(str(model), blessed, None, str(tmp_path / "serving"), paths)
    assert not os.path.exists(paths["pushed"]) and not os.path.exists(tmp_path / "serving")


def test_unwritable_destination_is_a_config_error(model_dir, blessed, tmp_path, out):
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file")  # even root cannot create a directory under it
    paths = out()
    with pytest.raises(ConfigError, match=f"push destination {blocker}/repo/penguin is not writable"):
        run(model_dir, blessed, None, str(blocker / "repo"), paths)
    assert not os.path.exists(paths["pushed"])


def test_push_interrupted_half_way_leaves_the_repository_loadable(model_dir, blessed, tmp_path, out, monkeypatch):
    base = str(tmp_path / "serving")
    run(model_dir, blessed, None, base, out())
    real_copy, copies = model_repository._copy_file, []

    def dying_copy(src, dst):
        if len(copies) == 2:
            raise KeyboardInterrupt  # the task was cancelled mid-copy
        copies.append(dst)
        real_copy(src, dst)

    monkeypatch.setattr(model_repository, "_copy_file", dying_copy)
    paths = out()
    with pytest.raises(KeyboardInterrupt):
        run(model_dir, blessed, None, base, paths)
    assert os.listdir(os.path.join(base, "penguin")) == ["1"]
    assert model_repository.latest_version(base, "penguin", strict=True) == 1
    assert model_repository.is_loadable(os.path.join(base, "penguin", "1"))
    assert not os.path.exists(paths["pushed"])


def test_existing_pushed_model_output_is_not_overwritten(model_dir, blessed, tmp_path, out):
    paths = out()
    os.makedirs(paths["pushed"])
    open(os.path.join(paths["pushed"], "something"), "w").close()
    with pytest.raises(FileExistsError):
        run(model_dir, blessed, None, str(tmp_path / "serving"), paths)


# ---------------------------------------------------------------------------
# Deployment from the executor


DEPLOY = {"namespace": "ml", "storage_uri_base": "pvc://model-store/serving", "min_replicas": 1,
          "max_replicas": 2, "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}


def test_push_then_create_inference_service(model_dir, blessed, tmp_path, out):
    api = RecordingCustomObjectsApi()
    paths = out()
    meta = run(model_dir, blessed, None, str(tmp_path / "serving"), paths, deploy=DEPLOY, kube_api=api)
    assert [c[0] for c in api.calls] == ["get", "create"]
    assert api.options[1] == {"field_manager": "kubetfx-pusher", "field_validation": "Strict"}
    service = meta["inference_service"]
    assert (service["name"], service["namespace"], service["action"]) == ("penguin", "ml", "created")
    assert service["storage_uri"] == "pvc://model-store/serving/penguin/1"
    with open(os.path.join(paths["pushed"], "inferenceservice.yaml")) as handle:
        manifest = yaml.safe_load(handle)
    assert manifest == api.calls[1][5]
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "pvc://model-store/serving/penguin/1"
    assert "KServe InferenceService" in open(paths["report"]).read()


def test_second_push_patches_with_canary(model_dir, blessed, tmp_path, out):
    base = str(tmp_path / "serving")
    first = out()
    run(model_dir, blessed, None, base, first, deploy=DEPLOY, kube_api=RecordingCustomObjectsApi())
    with open(os.path.join(first["pushed"], "inferenceservice.yaml")) as handle:
        existing = yaml.safe_load(handle)  # what the cluster holds after the first push
    api = RecordingCustomObjectsApi({("ml", "penguin"): existing})
    meta = run(model_dir, blessed, None, base, out(), deploy=dict(DEPLOY, canary_traffic_percent=20), kube_api=api)
    assert [c[0] for c in api.calls] == ["get", "patch"]
    assert api.options[1]["field_manager"] == "kubetfx-pusher"
    patch = api.calls[1][6]
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert patch["spec"]["predictor"]["model"]["storageUri"] == "pvc://model-store/serving/penguin/2"
    assert patch["metadata"]["annotations"][inference_service.PREVIOUS_STORAGE_URI] == \
        "pvc://model-store/serving/penguin/1"
    assert meta["inference_service"]["canary_traffic_percent"] == 20


def test_manifest_only_needs_no_cluster(model_dir, blessed, tmp_path, out):
    paths = out()
    meta = run(model_dir, blessed, None, str(tmp_path / "serving"), paths,
               deploy=dict(DEPLOY, apply=False, runtime="tensorflow"))
    assert meta["inference_service"]["action"].startswith("manifest only")
    manifest = yaml.safe_load(open(os.path.join(paths["pushed"], "inferenceservice.yaml")))
    assert manifest["spec"]["predictor"]["model"]["modelFormat"]["name"] == "tensorflow"
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "pvc://model-store/serving/penguin"


@pytest.mark.parametrize("deploy, message", [
    ({"runtime": "onnx", "storage_uri_base": "gs://b/m"}, "runtime 'onnx' is unknown"),
    ({"namespace": "ml"}, "KServe cannot load a model from"),  # local push destination, no storage_uri_base
])
def test_bad_deploy_settings_fail_before_pushing(model_dir, blessed, tmp_path, out, deploy, message):
    base = str(tmp_path / "serving")
    with pytest.raises(ConfigError, match=message):
        run(model_dir, blessed, None, base, out(), deploy=deploy)
    assert model_repository.list_versions(base, "penguin") == []


def test_no_cluster_fails_before_pushing(model_dir, blessed, tmp_path, out, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    base = str(tmp_path / "serving")
    with pytest.raises(kube_api.DeploymentError, match="no Kubernetes cluster reachable"):
        run(model_dir, blessed, None, base, out(), deploy=DEPLOY)
    assert model_repository.list_versions(base, "penguin") == []


def test_cluster_refusal_after_push_names_the_pushed_version(model_dir, blessed, tmp_path, out):
    class Forbidden(RecordingCustomObjectsApi):
        def create_namespaced_custom_object(self, *args, **options):
            raise ApiException(status=403, reason="Forbidden")

    paths = out()
    with pytest.raises(kube_api.DeploymentError, match="HTTP 403.*model version 1 was pushed"):
        run(model_dir, blessed, None, str(tmp_path / "serving"), paths, deploy=DEPLOY, kube_api=Forbidden())
    assert not os.path.exists(paths["pushed"])


# ---------------------------------------------------------------------------
# KFP component


def test_component_interface_compiles(tmp_path):
    from kfp import compiler

    from kubetfx.components.pusher.component import pusher

    path = tmp_path / "pusher.yaml"
    compiler.Compiler().compile(pusher, str(path))
    spec = yaml.safe_load(path.read_text())
    inputs = spec["components"]["comp-pusher"]["inputDefinitions"]
    assert set(inputs["artifacts"]) == {"model", "model_blessing", "infra_blessing", "statistics"}
    assert inputs["artifacts"]["infra_blessing"].get("isOptional") is True
    assert inputs["artifacts"]["statistics"].get("isOptional") is True
    assert inputs["parameters"]["deploy"]["parameterType"] == "STRUCT"
    outputs = spec["components"]["comp-pusher"]["outputDefinitions"]["artifacts"]
    assert set(outputs) == {"pushed_model", "report"}


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # our image is not a Python image
def test_component_runs_under_kfp_local(model_dir, blessed, tmp_path):
    """The component body end to end on the embedded runner (optional infra_blessing left out)."""
    from kfp import dsl, local
    from kfp.dsl import Artifact, Model

    from kubetfx.components.pusher.component import pusher

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    base = str(tmp_path / "serving")

    @dsl.pipeline
    def push_only(destination: str):
        model = dsl.importer(artifact_uri=model_dir, artifact_class=Model, reimport=False)
        verdict = dsl.importer(artifact_uri=blessed, artifact_class=Artifact, reimport=False)
        pusher(model=model.output, model_blessing=verdict.output, push_destination=destination,
               model_name="penguin", deploy={"apply": False, "storage_uri_base": "pvc://store/models"})

    push_only(destination=base)
    assert model_repository.list_versions(base, "penguin") == [1]
    manifests = [os.path.join(d, "inferenceservice.yaml") for d, _, files in os.walk(tmp_path / "root")
                 if "inferenceservice.yaml" in files]
    assert len(manifests) == 1
    assert yaml.safe_load(open(manifests[0]))["spec"]["predictor"]["model"]["storageUri"] == \
        "pvc://store/models/penguin/1"
