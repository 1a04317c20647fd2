"""Drive FakeKfpApi with the real kfp.Client, so the fake stays true to what the SDK sends and reads."""

import json
import urllib.error
import urllib.request
from datetime import datetime

import kfp
import kfp_server_api
import pytest
from kfp import compiler, dsl

from kfp_fake_api import FakeKfpApi

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")

API = "/apis/v2beta1"


@dsl.component(base_image="python:3.11-slim")
def echo(message: str) -> str:
    return message


@dsl.pipeline(name="fake-api-demo")
def demo(message: str = "hi"):
    echo(message=message)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("package") / "pipeline.yaml")
    compiler.Compiler().compile(demo, path)
    return path


@pytest.fixture(autouse=True)
def no_kfp_context(tmp_path, monkeypatch):
    """kfp.Client reads (and may write) ~/.config/kfp/context.json; keep tests off the real one."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def api():
    with FakeKfpApi() as fake:
        yield fake


@pytest.fixture
def client(api) -> kfp.Client:
    return kfp.Client(host=api.url, existing_token="secret-token")


@pytest.fixture
def pipeline(client, package):
    return client.upload_pipeline(package, pipeline_name="demo", description="first upload")


def raw(api: FakeKfpApi, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
    """A request outside kfp.Client, for calls the SDK validates away; returns (status, JSON)."""
    request = urllib.request.Request(api.url + path, data=body or None, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_construction_checks_healthz_and_sends_the_bearer_token(api, client):
    assert api.calls() == [f"GET {API}/healthz"]
    assert api.requests[0].headers["Authorization"] == "Bearer secret-token"
    health = client.get_kfp_healthz()
    assert health.multi_user is False and health.pipeline_store == "database"


def test_upload_pipeline_stores_the_package_and_a_first_version(api, client, package, pipeline):
    upload = api.requests[-1]
    assert (upload.method, upload.path) == ("POST", f"{API}/pipelines/upload")
    assert upload.query == {"name": ["demo"], "description": ["first upload"]}
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert api.pipelines[pipeline.pipeline_id]["display_name"] == "demo"
    assert (pipeline.name, pipeline.description) == ("demo", "first upload")
    assert isinstance(pipeline.created_at, datetime)

    versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert [v.display_name for v in versions] == ["demo"]
    with open(package, "rb") as f:
        assert api.uploads[versions[0].pipeline_version_id] == f.read()
    assert client.get_pipeline(pipeline.pipeline_id).pipeline_id == pipeline.pipeline_id


def test_get_pipeline_id_filters_by_display_name(api, client, pipeline):
    assert client.get_pipeline_id("demo") == pipeline.pipeline_id
    sent = json.loads(api.requests[-1].query["filter"][0])
    assert sent == {"predicates": [{"operation": 1, "key": "display_name", "stringValue": "demo"}]}
    assert client.get_pipeline_id("no-such-pipeline") is None

    named = json.dumps({"predicates": [{"operation": "IS_SUBSTRING", "key": "name", "string_value": "dem"}]})
    listing = client.list_pipelines(filter=named)
    assert [p.pipeline_id for p in listing.pipelines] == [pipeline.pipeline_id]
    assert listing.total_size == 1


def test_duplicate_pipeline_upload_conflicts_with_the_upload_error_body(client, package, pipeline):
    with pytest.raises(kfp_server_api.ApiException) as caught:
        client.upload_pipeline(package, pipeline_name="demo")
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["error_message"] == "Failed to create a pipeline and a pipeline version"


def test_upload_pipeline_version_is_listed_newest_first(api, client, package, pipeline):
    version = client.upload_pipeline_version(package, "v2", pipeline_id=pipeline.pipeline_id)
    assert api.requests[-1].query == {"name": ["v2"], "pipelineid": [pipeline.pipeline_id]}
    assert version.pipeline_id == pipeline.pipeline_id

    newest = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc")
    assert [v.display_name for v in newest.pipeline_versions] == ["v2", "demo"]
    assert newest.total_size == 2
    fetched = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert fetched.pipeline_version_id == version.pipeline_version_id


def test_create_experiment_twice_returns_the_same_experiment(api, client):
    first = client.create_experiment("nightly", description="scheduled")
    second = client.create_experiment("nightly")
    assert second.experiment_id == first.experiment_id
    assert api.calls().count(f"POST {API}/experiments") == 1
    created = next(r for r in api.requests if r.method == "POST")
    assert created.json == {"display_name": "nightly", "description": "scheduled", "namespace": ""}

    assert client.get_experiment(experiment_name="nightly").experiment_id == first.experiment_id
    assert client.get_experiment(experiment_id=first.experiment_id).description == "scheduled"
    names = [e.display_name for e in client.list_experiments().experiments]
    assert names == ["Default", "nightly"]  # a fresh single-user server already has "Default"


def test_run_carries_its_params_and_service_account(api, client, pipeline):
    experiment = client.create_experiment("runs")
    version_id = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0].pipeline_version_id
    run = client.run_pipeline(experiment.experiment_id, "job-1", pipeline_id=pipeline.pipeline_id,
                              version_id=version_id, params={"message": "hello", "retries": 3},
                              service_account="trainer", enable_caching=False)
    assert api.requests[-1].json["pipeline_version_reference"] == {
        "pipeline_id": pipeline.pipeline_id, "pipeline_version_id": version_id}

    fetched = client.get_run(run.run_id)
    assert fetched.run_id == run.run_id and fetched.experiment_id == experiment.experiment_id
    assert fetched.runtime_config.parameters == {"message": "hello", "retries": 3}
    assert fetched.service_account == "trainer"
    assert fetched.pipeline_version_reference.pipeline_version_id == version_id
    assert (fetched.state, fetched.display_name) == ("PENDING", "job-1")
    assert [r.run_id for r in client.list_runs(experiment_id=experiment.experiment_id).runs] == [run.run_id]


def test_run_from_a_package_embeds_the_spec_and_defaults_the_service_account(client, package):
    run = client.create_run_from_pipeline_package(package, arguments={"message": "x"}, run_name="adhoc")
    fetched = client.get_run(run.run_id)
    assert fetched.pipeline_spec["pipelineInfo"]["name"] == "fake-api-demo"
    assert fetched.service_account == "pipeline-runner"
    assert client.get_experiment(experiment_id=fetched.experiment_id).display_name == "Default"


def test_run_errors_answer_like_the_server(api, client, pipeline):
    version_id = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0].pipeline_version_id
    with pytest.raises(kfp_server_api.ApiException) as caught:
        client.run_pipeline("no-such-experiment", "job", pipeline_id=pipeline.pipeline_id, version_id=version_id)
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["code"] == 5

    status, body = raw(api, "POST", f"{API}/runs", json.dumps({"display_name": "no-source"}).encode())
    assert status == 500 and body["code"] == 13 and body["details"] == []
    status, body = raw(api, "POST", f"{API}/runs", json.dumps({"display_name": "x", "bogus": 1}).encode())
    assert status == 400 and body["code"] == 3 and "bogus" in body["message"]


def test_recurring_runs_are_scoped_filtered_and_deleted(api, client, pipeline):
    version_id = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0].pipeline_version_id
    nightly, adhoc = client.create_experiment("nightly"), client.create_experiment("adhoc")

    def schedule(experiment, name, **kwargs):
        return client.create_recurring_run(experiment.experiment_id, name, cron_expression="0 0 3 * * *",
                                           pipeline_id=pipeline.pipeline_id, version_id=version_id, **kwargs)

    daily = schedule(nightly, "daily", params={"message": "m"}, max_concurrency=2, service_account="sched")
    schedule(nightly, "weekly", enabled=False)
    schedule(adhoc, "daily")

    fetched = client.get_recurring_run(daily.recurring_run_id)
    assert fetched.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert (fetched.mode, fetched.status, fetched.max_concurrency) == ("ENABLE", "ENABLED", "2")
    assert fetched.service_account == "sched" and fetched.runtime_config.parameters == {"message": "m"}
    assert fetched.pipeline_version_reference.pipeline_id == pipeline.pipeline_id

    scoped = client.list_recurring_runs(experiment_id=nightly.experiment_id)
    assert sorted(r.display_name for r in scoped.recurring_runs) == ["daily", "weekly"]
    assert api.requests[-1].query["experiment_id"] == [nightly.experiment_id]
    by_name = json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": "daily"}]})
    filtered = client.list_recurring_runs(experiment_id=nightly.experiment_id, filter=by_name)
    assert [r.recurring_run_id for r in filtered.recurring_runs] == [daily.recurring_run_id]

    first = client.list_recurring_runs(page_size=2)
    assert len(first.recurring_runs) == 2 and first.total_size == 3 and first.next_page_token
    rest = client.list_recurring_runs(page_size=2, page_token=first.next_page_token)
    assert len(rest.recurring_runs) == 1 and rest.next_page_token is None

    assert client.delete_recurring_run(daily.recurring_run_id) == {}
    assert api.calls()[-1] == f"DELETE {API}/recurringruns/{daily.recurring_run_id}"
    assert daily.recurring_run_id not in api.recurring_runs
    with pytest.raises(kfp_server_api.ApiException) as caught:
        client.get_recurring_run(daily.recurring_run_id)
    assert caught.value.status == 404
    remaining = client.list_recurring_runs(experiment_id=nightly.experiment_id).recurring_runs
    assert [r.display_name for r in remaining] == ["weekly"]


def test_unknown_routes_and_bad_uploads(api):
    status, body = raw(api, "GET", f"{API}/nothing-here")
    assert status == 404 and body == {"error": "Not Found", "code": 5, "message": "Not Found", "details": []}
    assert raw(api, "PUT", f"{API}/runs")[0] == 404
    status, body = raw(api, "POST", f"{API}/pipelines/upload?name=x", b"--b--\r\n", "multipart/form-data; boundary=b")
    assert status == 400 and body["error_message"] == "Failed to read pipeline from file"
    assert api.calls() == [f"GET {API}/nothing-here", f"PUT {API}/runs", f"POST {API}/pipelines/upload"]


def test_multi_user_requires_namespaces(tmp_path):
    with FakeKfpApi(multi_user=True) as api:
        client = kfp.Client(host=api.url)
        assert client.get_kfp_healthz().multi_user is True
        assert "authorization" not in api.requests[0].headers
        with pytest.raises(kfp_server_api.ApiException) as caught:
            client.create_experiment("team")
        assert caught.value.status == 400

        experiment = client.create_experiment("team", namespace="team-a")
        assert experiment.namespace == "team-a"
        assert [e.experiment_id for e in client.list_experiments(namespace="team-a").experiments] == [
            experiment.experiment_id]
        assert client.list_experiments(namespace="team-b").experiments is None
