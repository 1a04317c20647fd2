"""In-process fake of the Kubeflow Pipelines v2beta1 REST API.

Lets tests drive the real ``kfp.Client`` end to end without a cluster. It answers the
paths, query parameters, status codes and snake_case JSON that the KFP API server
(grpc-gateway with ``UseProtoNames``, ``EmitUnpopulated=false``) answers, and records
every request so tests can assert on what the client actually sent. Stdlib only.

Behaviour copied from the real server (backend/src/apiserver):
- single-user mode has a ``Default`` experiment from the start, namespaces are
  blanked, and a run without ``experiment_id`` lands in ``Default``;
- a run's ``service_account`` defaults to ``pipeline-runner``; it starts ``PENDING``;
- unknown ids answer 404, and a run or recurring run whose pipeline source is
  missing or unknown answers 500, because the server wraps that as an internal error;
- the multipart upload endpoints are plain HTTP handlers, so their errors are
  ``{"error_message", "error_details"}`` rather than a gRPC status;
- ListRecurringRunsResponse's list is ``recurringRuns`` (that is its proto field name).

The fake cannot parse YAML without a third-party package, so pipeline versions carry
no ``pipeline_spec``; the uploaded bytes are kept in ``uploads`` instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import operator
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API = "/apis/v2beta1"
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 200
DEFAULT_SERVICE_ACCOUNT = "pipeline-runner"
HEALTHZ = {"commit_sha": "fake", "tag_name": "2.17.3", "pipeline_store": "database"}

# Top-level fields of each v2beta1 message: requests with other fields are rejected
# (the server unmarshals with DiscardUnknown=false); filters and sort_by may use them.
PIPELINE_FIELDS = frozenset(
    {"pipeline_id", "display_name", "name", "description", "created_at", "namespace", "error", "tags"})
VERSION_FIELDS = frozenset(
    {"pipeline_id", "pipeline_version_id", "display_name", "name", "description", "created_at",
     "package_url", "code_source_url", "pipeline_spec", "error", "tags"})
EXPERIMENT_FIELDS = frozenset(
    {"experiment_id", "display_name", "description", "created_at", "namespace", "storage_state",
     "last_run_created_at"})
RUN_FIELDS = frozenset(
    {"experiment_id", "run_id", "display_name", "storage_state", "description", "pipeline_version_id",
     "pipeline_spec", "pipeline_version_reference", "runtime_config", "service_account", "created_at",
     "scheduled_at", "finished_at", "state", "error", "run_details", "recurring_run_id", "state_history",
     "plugins_input", "plugins_output"})
RECURRING_RUN_FIELDS = frozenset(
    {"recurring_run_id", "display_name", "description", "pipeline_version_id", "pipeline_spec",
     "pipeline_version_reference", "runtime_config", "service_account", "max_concurrency", "trigger",
     "mode", "created_at", "updated_at", "status", "error", "no_catchup", "namespace", "experiment_id",
     "plugins_input"})

# google.protobuf.Struct/Value maps: user data, kept verbatim.
FREEFORM = frozenset({"parameters", "pipeline_spec", "plugins_input", "tags"})

# Filter operations by proto enum number (kfp.Client sends numbers) and by name.
OPERATION_NAMES = {1: "EQUALS", 2: "NOT_EQUALS", 3: "GREATER_THAN", 5: "GREATER_THAN_EQUALS",
                   6: "LESS_THAN", 7: "LESS_THAN_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}
OPERATIONS = {
    "EQUALS": operator.eq, "NOT_EQUALS": operator.ne, "GREATER_THAN": operator.gt,
    "GREATER_THAN_EQUALS": operator.ge, "LESS_THAN": operator.lt, "LESS_THAN_EQUALS": operator.le,
    "IN": lambda value, wanted: value in wanted, "IS_SUBSTRING": lambda value, wanted: wanted in value,
}
PREDICATE_VALUES = ("string_value", "int_value", "long_value", "timestamp_value",
                    "string_values", "int_values", "long_values")


class Headers(dict):
    """Request headers; lower-case keys, case-insensitive lookups, as HTTP headers are."""

    def __init__(self, items):
        super().__init__((key.lower(), value) for key, value in items)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the fake received it, for asserting on what the client sent."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]  # blank values kept: kfp sends e.g. ``namespace=``
    headers: Headers
    json: Any  # parsed JSON body, or None
    body: bytes


class ApiError(Exception):
    """A gRPC status, rendered with the HTTP status grpc-gateway maps its code to."""

    HTTP_STATUS = {3: 400, 5: 404, 6: 409, 7: 403, 13: 500, 16: 401}

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message, self.status = code, message, self.HTTP_STATUS[code]

    def body(self) -> dict:
        return {"error": self.message, "code": self.code, "message": self.message, "details": []}


class UploadError(Exception):
    """An error from the multipart upload handlers, which write their own error body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict:
        return {"error_message": self.message, "error_details": self.message}


def invalid(message: str) -> ApiError:
    return ApiError(3, message)


def not_found(kind: str, resource_id: str) -> ApiError:
    return ApiError(5, f"{kind} {resource_id} not found.")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


def snake_case(obj: Any) -> Any:
    """protojson accepts lowerCamelCase JSON names too; normalise to the proto names."""
    if isinstance(obj, list):
        return [snake_case(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    result = {}
    for key, value in obj.items():
        key = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
        result[key] = value if key in FREEFORM else snake_case(value)
    return result


def prune(obj: dict) -> dict:
    """Drop unset fields, as the server's marshaler does with EmitUnpopulated=false."""
    result = {}
    for key, value in obj.items():
        if isinstance(value, dict) and key not in FREEFORM:
            value = prune(value)
        elif isinstance(value, list):
            value = [prune(item) if isinstance(item, dict) else item for item in value]
        if value is None or value in ("", 0, False, {}, []):
            continue
        result[key] = value
    return result


def query(req: RecordedRequest, name: str) -> str:
    return req.query.get(name, [""])[0]


class FakeKfpApi:
    """Fake KFP v2beta1 API server on 127.0.0.1:<free port>; state is kept as the API returns it."""

    def __init__(self, multi_user: bool = False, authorizer=None):
        """``authorizer(request, verb, resource, namespace)``: multi-user KFP's access check, called before
        every request but healthz; it raises :class:`ApiError` 16 (401) or 7 (403) to refuse."""
        self.multi_user = multi_user
        self.authorizer = authorizer
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.pipelines: dict[str, dict] = {}
        self.pipeline_versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.uploads: dict[str, bytes] = {}  # pipeline_version_id -> uploaded package bytes
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._default_experiment_id = "" if multi_user else self._add_experiment(
            "Default", "All runs created without specifying an experiment will be grouped here.", "")

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "FakeKfpApi":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kfp-api",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "FakeKfpApi":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def calls(self) -> list[str]:
        return [f"{req.method} {req.path}" for req in self.requests]

    # -- dispatch ----------------------------------------------------------------

    def _handle(self, method: str, target: str, headers, body: bytes) -> tuple[int, bytes]:
        """Record the request, route it, and return (status, JSON body)."""
        url = urlsplit(target)
        parsed = None
        if body and "json" in headers.get("Content-Type", ""):
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        req = RecordedRequest(method, url.path, parse_qs(url.query, keep_blank_values=True),
                              Headers(headers.items()), parsed, body)
        with self._lock:
            self.requests.append(req)
            try:
                status, payload = 200, self._route(req)
            except (ApiError, UploadError) as error:
                status, payload = error.status, error.body()
            except Exception as error:  # a fake bug: answer it, or urllib3 would retry the call
                status, payload = 500, ApiError(13, f"FakeKfpApi failed: {error!r}").body()
            return status, json.dumps(payload).encode()

    def _route(self, req: RecordedRequest) -> dict:
        for method, pattern, handler in ROUTES:
            match = pattern.fullmatch(req.path)
            if match and method in ("*", req.method):
                params = {key: unquote(value) for key, value in match.groupdict().items()}
                if self.authorizer is not None and handler in ACCESS:
                    verb, resource = ACCESS[handler]
                    self.authorizer(req, verb, resource, self._request_namespace(req, params))
                return handler(self, req, **params)
        raise ApiError(5, "Not Found")

    def _request_namespace(self, req: RecordedRequest, params: dict) -> str:
        """The namespace a request acts in, as multi-user KFP resolves it for its access check."""
        namespace = query(req, "namespace")
        if not namespace and isinstance(req.json, dict):
            namespace = snake_case(req.json).get("namespace", "")
        experiment_id = params.get("experiment_id") or query(req, "experiment_id") or \
            (snake_case(req.json).get("experiment_id", "") if isinstance(req.json, dict) else "")
        if not namespace and experiment_id in self.experiments:
            namespace = self.experiments[experiment_id].get("namespace", "")
        if not namespace and params.get("pipeline_id") in self.pipelines:
            namespace = self.pipelines[params["pipeline_id"]].get("namespace", "")
        return namespace

    # -- helpers -----------------------------------------------------------------

    def _namespace(self, namespace: str) -> str:
        """Single-user servers ignore namespaces (ResourceManager.ReplaceNamespace)."""
        return namespace if self.multi_user else ""

    @staticmethod
    def _message(req: RecordedRequest, fields: frozenset) -> dict:
        if not req.body:
            return {}
        if not isinstance(req.json, dict):
            raise invalid("proto: syntax error: request body is not a JSON object")
        message = snake_case(req.json)
        unknown = sorted(set(message) - fields)
        if unknown:
            raise invalid(f'proto: unknown field "{unknown[0]}"')
        return message

    @staticmethod
    def _page(req: RecordedRequest, items: list[dict], key: str, fields: frozenset) -> dict:
        """Filter, sort and paginate a listing the way the server's list.Options do."""
        predicates = parse_filter(query(req, "filter"), fields)
        sort_field, descending = parse_sort_by(query(req, "sort_by"), fields)
        try:
            items = [item for item in items
                     if all(test(item.get(field, ""), wanted) for field, test, wanted in predicates)]
            # Ties keep creation order (newest first when descending).
            ordered = [item for _, item in sorted(enumerate(items), reverse=descending,
                                                  key=lambda pair: (pair[1].get(sort_field, ""), pair[0]))]
        except TypeError as error:
            raise invalid(f"filter or sort_by does not fit the field's type: {error}") from None
        try:
            size = int(query(req, "page_size") or 0)
        except ValueError:
            raise invalid("page_size must be an integer") from None
        if size < 0:
            raise invalid(f"The page size should be greater than 0. Got {size}")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offset = decode_page_token(query(req, "page_token"))
        end = offset + size
        return prune({key: ordered[offset:end], "total_size": len(ordered),
                      "next_page_token": encode_page_token(end) if end < len(ordered) else ""})

    def _experiment(self, experiment_id: str) -> dict:
        if experiment_id not in self.experiments:
            raise not_found("Experiment", experiment_id)
        return self.experiments[experiment_id]

    def _owning_experiment(self, experiment_id: str) -> dict:
        """An explicit experiment must exist; none means Default (single-user only)."""
        if experiment_id:
            return self._experiment(experiment_id)
        if self.multi_user:
            raise invalid("Experiment id can not be empty in multi-user mode")
        return self.experiments[self._default_experiment_id]

    def _pipeline_source(self, message: dict, latest_version: bool, failure: str) -> dict:
        """Resolve pipeline_version_reference / pipeline_spec; the server reports misses as internal."""
        reference = message.get("pipeline_version_reference") or {}
        pipeline_id = reference.get("pipeline_id", "")
        version_id = reference.get("pipeline_version_id", "")
        if version_id:
            if version_id not in self.pipeline_versions:
                raise ApiError(13, f"{failure}: PipelineVersion {version_id} not found.")
            pipeline_id = pipeline_id or self.pipeline_versions[version_id]["pipeline_id"]
        elif pipeline_id:
            versions = [v for v in self.pipeline_versions.values() if v["pipeline_id"] == pipeline_id]
            if pipeline_id not in self.pipelines or not versions:
                raise ApiError(13, f"{failure}: Pipeline {pipeline_id} not found.")
            if latest_version:
                version_id = versions[-1]["pipeline_version_id"]
        elif message.get("pipeline_spec"):
            return {"pipeline_spec": message["pipeline_spec"]}
        else:
            raise ApiError(13, f"{failure}: a pipeline spec or a pipeline version reference is required")
        return {"pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id}}

    def _add_experiment(self, name: str, description: str, namespace: str) -> str:
        experiment_id = new_id()
        self.experiments[experiment_id] = prune({
            "experiment_id": experiment_id, "display_name": name, "description": description,
            "created_at": now(), "namespace": namespace, "storage_state": "AVAILABLE",
            "last_run_created_at": EPOCH})
        return experiment_id

    def _add_version(self, pipeline: dict, name: str, display_name: str, description: str,
                     content: bytes) -> dict:
        version_id = new_id()
        version = prune({
            "pipeline_id": pipeline["pipeline_id"], "pipeline_version_id": version_id,
            "display_name": display_name, "name": name, "description": description, "created_at": now()})
        self.pipeline_versions[version_id] = version
        self.uploads[version_id] = content
        return version

    # -- healthz -----------------------------------------------------------------

    def _healthz(self, req: RecordedRequest) -> dict:
        return {**HEALTHZ, "multi_user": self.multi_user}

    # -- pipelines ---------------------------------------------------------------

    def _upload_pipeline(self, req: RecordedRequest) -> dict:
        filename, content = uploaded_file(req, "Failed to read pipeline from file")
        namespace = self._namespace(query(req, "namespace"))
        name = query(req, "name") or query(req, "display_name") or filename
        display_name = query(req, "display_name") or name
        if any(p["name"] == name and p.get("namespace", "") == namespace for p in self.pipelines.values()):
            raise UploadError(409, "Failed to create a pipeline and a pipeline version")
        description = query(req, "description")
        pipeline_id = new_id()
        pipeline = prune({
            "pipeline_id": pipeline_id, "display_name": display_name, "name": name,
            "description": description, "created_at": now(), "namespace": namespace})
        self.pipelines[pipeline_id] = pipeline
        self._add_version(pipeline, name, display_name, description, content)
        return pipeline

    def _upload_pipeline_version(self, req: RecordedRequest) -> dict:
        failure = "Failed to create a pipeline version"
        filename, content = uploaded_file(req, failure)
        pipeline = self.pipelines.get(query(req, "pipelineid"))
        if pipeline is None:
            raise UploadError(400, failure)
        name = query(req, "name") or query(req, "display_name") or filename
        if any(v["pipeline_id"] == pipeline["pipeline_id"] and v["name"] == name
               for v in self.pipeline_versions.values()):
            raise UploadError(409, failure)
        return self._add_version(pipeline, name, query(req, "display_name") or name,
                                 query(req, "description"), content)

    def _list_pipelines(self, req: RecordedRequest) -> dict:
        namespace = self._namespace(query(req, "namespace"))
        items = [p for p in self.pipelines.values() if p.get("namespace", "") == namespace]
        return self._page(req, items, "pipelines", PIPELINE_FIELDS)

    def _get_pipeline(self, req: RecordedRequest, pipeline_id: str) -> dict:
        if pipeline_id not in self.pipelines:
            raise not_found("Pipeline", pipeline_id)
        return self.pipelines[pipeline_id]

    def _list_pipeline_versions(self, req: RecordedRequest, pipeline_id: str) -> dict:
        items = [v for v in self.pipeline_versions.values() if v["pipeline_id"] == pipeline_id]
        return self._page(req, items, "pipeline_versions", VERSION_FIELDS)

    def _get_pipeline_version(self, req: RecordedRequest, pipeline_id: str, version_id: str) -> dict:
        version = self.pipeline_versions.get(version_id)
        if version is None or version["pipeline_id"] != pipeline_id:
            raise not_found("PipelineVersion", version_id)
        return version

    # -- experiments -------------------------------------------------------------

    def _create_experiment(self, req: RecordedRequest) -> dict:
        message = self._message(req, EXPERIMENT_FIELDS)
        name = message.get("display_name", "")
        if not name:
            raise invalid("Experiment must have a non-empty name")
        namespace = self._namespace(message.get("namespace", ""))
        if self.multi_user and not namespace:
            raise invalid("An experiment cannot have an empty namespace in multi-user mode")
        if any(e["display_name"] == name and e.get("namespace", "") == namespace
               for e in self.experiments.values()):
            raise ApiError(6, f"Failed to create a new experiment. The name {name} already exists. "
                              "Please specify a new name")
        return self.experiments[self._add_experiment(name, message.get("description", ""), namespace)]

    def _list_experiments(self, req: RecordedRequest) -> dict:
        namespace = self._namespace(query(req, "namespace"))
        if self.multi_user and not namespace:
            raise invalid("An experiment cannot have an empty namespace in multi-user mode")
        items = [e for e in self.experiments.values() if e.get("namespace", "") == namespace]
        return self._page(req, items, "experiments", EXPERIMENT_FIELDS)

    def _get_experiment(self, req: RecordedRequest, experiment_id: str) -> dict:
        return self._experiment(experiment_id)

    # -- runs --------------------------------------------------------------------

    def _create_run(self, req: RecordedRequest) -> dict:
        message = self._message(req, RUN_FIELDS)
        if not message.get("display_name"):
            raise invalid("The run name is empty. Please specify a valid name")
        experiment = self._owning_experiment(message.get("experiment_id", ""))
        source = self._pipeline_source(message, latest_version=True,
                                       failure="Failed to create a run due to error fetching manifest")
        created = now()
        run_id = new_id()
        self.runs[run_id] = prune({
            "experiment_id": experiment["experiment_id"], "run_id": run_id,
            "display_name": message["display_name"], "storage_state": "AVAILABLE",
            "description": message.get("description"), **source,
            "runtime_config": message.get("runtime_config"),
            "service_account": message.get("service_account") or DEFAULT_SERVICE_ACCOUNT,
            "created_at": created, "scheduled_at": created, "finished_at": EPOCH, "state": "PENDING",
            "recurring_run_id": message.get("recurring_run_id"),
            "state_history": [{"update_time": created, "state": "PENDING"}]})
        experiment["last_run_created_at"] = created
        return self.runs[run_id]

    def _list_runs(self, req: RecordedRequest) -> dict:
        return self._page(req, self._scoped(req, self.runs), "runs", RUN_FIELDS)

    def _get_run(self, req: RecordedRequest, run_id: str) -> dict:
        if run_id not in self.runs:
            raise not_found("Run", run_id)
        return self.runs[run_id]

    def _scoped(self, req: RecordedRequest, resources: dict) -> list[dict]:
        """experiment_id scopes a run listing; otherwise the (multi-user) namespace does."""
        experiment_id = query(req, "experiment_id")
        if experiment_id:
            self._experiment(experiment_id)
            return [r for r in resources.values() if r["experiment_id"] == experiment_id]
        namespace = self._namespace(query(req, "namespace"))
        if self.multi_user and not namespace:
            raise invalid("Resource cannot have an empty namespace and experiment id in multi-user mode")
        return [r for r in resources.values()
                if self.experiments.get(r["experiment_id"], {}).get("namespace", "") == namespace]

    # -- recurring runs ----------------------------------------------------------

    def _create_recurring_run(self, req: RecordedRequest) -> dict:
        message = self._message(req, RECURRING_RUN_FIELDS)
        if not message.get("display_name"):
            raise invalid("Recurring run name is empty. Please specify a valid name")
        try:
            max_concurrency = int(message.get("max_concurrency") or 1)
        except ValueError:
            raise invalid("max_concurrency must be an integer") from None
        if not 1 <= max_concurrency <= 10:
            raise invalid("max concurrency of the recurring run should be in the range of [1,10]")
        experiment = self._owning_experiment(message.get("experiment_id", ""))
        source = self._pipeline_source(
            message, latest_version=False,
            failure="Failed to create a recurring run with an invalid pipeline spec manifest")
        trigger = message.get("trigger") or {}
        periodic = trigger.get("periodic_schedule")
        if periodic and "interval_second" in periodic:
            periodic["interval_second"] = str(periodic["interval_second"])  # int64 -> JSON string
        enabled = message.get("mode") == "ENABLE"
        created = now()
        recurring_run_id = new_id()
        self.recurring_runs[recurring_run_id] = prune({
            "recurring_run_id": recurring_run_id, "display_name": message["display_name"],
            "description": message.get("description"), **source,
            "runtime_config": message.get("runtime_config"),
            "service_account": message.get("service_account"),
            "max_concurrency": str(max_concurrency), "trigger": trigger,
            "mode": "ENABLE" if enabled else "DISABLE", "created_at": created, "updated_at": created,
            "status": "ENABLED" if enabled else "DISABLED", "no_catchup": message.get("no_catchup"),
            "namespace": experiment.get("namespace", ""), "experiment_id": experiment["experiment_id"]})
        return self.recurring_runs[recurring_run_id]

    def _list_recurring_runs(self, req: RecordedRequest) -> dict:
        # The proto field really is ``recurringRuns``, so UseProtoNames emits camelCase here.
        items = self._scoped(req, self.recurring_runs)
        return self._page(req, items, "recurringRuns", RECURRING_RUN_FIELDS)

    def _get_recurring_run(self, req: RecordedRequest, recurring_run_id: str) -> dict:
        if recurring_run_id not in self.recurring_runs:
            raise not_found("RecurringRun", recurring_run_id)
        return self.recurring_runs[recurring_run_id]

    def _delete_recurring_run(self, req: RecordedRequest, recurring_run_id: str) -> dict:
        self._get_recurring_run(req, recurring_run_id)
        del self.recurring_runs[recurring_run_id]
        return {}


def uploaded_file(req: RecordedRequest, failure: str) -> tuple[str, bytes]:
    """The ``uploadfile`` part of a multipart/form-data upload, as (filename, bytes)."""
    content_type = req.headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + req.body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "uploadfile":
                content = part.get_payload(decode=True) or b""
                if not content:
                    raise UploadError(400, "Failed to read a pipeline spec file")
                return part.get_filename() or "", content
    raise UploadError(400, failure)


def parse_filter(raw: str, fields: frozenset) -> list[tuple[str, Any, Any]]:
    """Decode a JSON ``Filter`` into (field, test, wanted) predicates."""
    if not raw:
        return []
    try:
        spec = snake_case(json.loads(raw))
        predicates = spec.get("predicates", [])
    except (ValueError, AttributeError) as error:
        raise invalid(f"failed to parse valid filter from {raw!r}: {error}") from None
    result = []
    for predicate in predicates:
        operation = OPERATION_NAMES.get(predicate.get("operation"), predicate.get("operation"))
        if operation not in OPERATIONS:
            raise invalid(f"Invalid filter operation: {predicate.get('operation')!r}")
        field = predicate.get("key", "")
        if field not in fields:
            raise invalid(f"Invalid filter key: {field!r}")
        wanted = next((predicate[name] for name in PREDICATE_VALUES if name in predicate), "")
        if isinstance(wanted, dict):  # *_values: {"values": [...]}
            wanted = wanted.get("values", [])
        result.append((field, OPERATIONS[operation], wanted))
    return result


def parse_sort_by(sort_by: str, fields: frozenset) -> tuple[str, bool]:
    """``"field"``, ``"field asc"`` or ``"field desc"``; the default order is by creation."""
    words = sort_by.lower().split()
    if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
        raise invalid(f'Received invalid sort by format `{sort_by}`. Supported format: "field_name", '
                      '"field_name desc", or "field_name asc"')
    field = words[0] if words else "created_at"
    if field not in fields:
        raise invalid(f"Cannot sort on field {field}.")
    return field, len(words) == 2 and words[1] == "desc"


def encode_page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.b64decode(token, validate=True))["offset"])
    except (ValueError, KeyError, TypeError):
        raise invalid("Invalid package token.") from None


_ID = r"(?P<{}>[^/:]+)"
ROUTES = [
    (method, re.compile(API + path.format(**{name: _ID.format(name) for name in
                                           ("pipeline_id", "version_id", "experiment_id", "run_id",
                                            "recurring_run_id")})), handler)
    for method, path, handler in [
        ("*", "/healthz", FakeKfpApi._healthz),
        ("POST", "/pipelines/upload", FakeKfpApi._upload_pipeline),
        ("POST", "/pipelines/upload_version", FakeKfpApi._upload_pipeline_version),
        ("GET", "/pipelines", FakeKfpApi._list_pipelines),
        ("GET", "/pipelines/{pipeline_id}", FakeKfpApi._get_pipeline),
        ("GET", "/pipelines/{pipeline_id}/versions", FakeKfpApi._list_pipeline_versions),
        ("GET", "/pipelines/{pipeline_id}/versions/{version_id}", FakeKfpApi._get_pipeline_version),
        ("POST", "/experiments", FakeKfpApi._create_experiment),
        ("GET", "/experiments", FakeKfpApi._list_experiments),
        ("GET", "/experiments/{experiment_id}", FakeKfpApi._get_experiment),
        ("POST", "/runs", FakeKfpApi._create_run),
        ("GET", "/runs", FakeKfpApi._list_runs),
        ("GET", "/runs/{run_id}", FakeKfpApi._get_run),
        ("POST", "/recurringruns", FakeKfpApi._create_recurring_run),
        ("GET", "/recurringruns", FakeKfpApi._list_recurring_runs),
        ("GET", "/recurringruns/{recurring_run_id}", FakeKfpApi._get_recurring_run),
        ("DELETE", "/recurringruns/{recurring_run_id}", FakeKfpApi._delete_recurring_run),
    ]
]

# The (verb, resource) multi-user KFP authorizes each call with (group pipelines.kubeflow.org).
ACCESS = {
    FakeKfpApi._upload_pipeline: ("create", "pipelines"),
    FakeKfpApi._upload_pipeline_version: ("create", "pipelines"),
    FakeKfpApi._list_pipelines: ("list", "pipelines"),
    FakeKfpApi._get_pipeline: ("get", "pipelines"),
    FakeKfpApi._list_pipeline_versions: ("list", "pipelines"),
    FakeKfpApi._get_pipeline_version: ("get", "pipelines"),
    FakeKfpApi._create_experiment: ("create", "experiments"),
    FakeKfpApi._list_experiments: ("list", "experiments"),
    FakeKfpApi._get_experiment: ("get", "experiments"),
    FakeKfpApi._create_run: ("create", "runs"),
    FakeKfpApi._list_runs: ("list", "runs"),
    FakeKfpApi._get_run: ("get", "runs"),
    FakeKfpApi._create_recurring_run: ("create", "jobs"),
    FakeKfpApi._list_recurring_runs: ("list", "jobs"),
    FakeKfpApi._get_recurring_run: ("get", "jobs"),
    FakeKfpApi._delete_recurring_run: ("delete", "jobs"),
}


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the owning FakeKfpApi; keep-alive like the real server."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.api._handle(self.command, self.path, self.headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch

    def log_message(self, format, *args) -> None:  # keep pytest output clean
        pass
