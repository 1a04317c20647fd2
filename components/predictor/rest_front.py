"""The REST front door: one ASGI layer in front of kserve's FastAPI app.

Every HTTP request passes through :class:`RestFrontDoor` first. It

* caps request bodies at ``max_request_bytes`` on every route (413 with an ``{"error": ...}`` body,
  as soon as Content-Length says so, else once the body read so far is over it);
* answers the two inference routes of a kubetfx model itself: ``POST /v1/models/NAME:predict`` and
  ``POST /v2/models/NAME/infer`` (JSON, or V2 binary tensors decoded by kserve's own
  ``InferRequest.from_bytes``). It parses JSON with orjson, hands the parsed body to the model
  (``kserve.Model.__call__``: preprocess -> predict -> postprocess, with kserve's per-stage
  metrics) and writes the answer with orjson. This skips FastAPI's routing, pydantic's validation
  of the V2 request and response and kserve's re-encoding -- most of the event loop's time per
  request in a profile -- and every failure is answered per :mod:`error_policy` (a non-JSON
  Content-Type is a 415 that says so; a decoding failure is a 400, never a 500);
* passes everything else to kserve unchanged (CloudEvents, versioned paths, metadata, health,
  ``/metrics``), after the same size cap, and keeps a failure there from resetting the
  connection: when kserve's error middleware re-raises an exception after it has already
  answered, the exception stops here instead of reaching uvicorn (which would close the
  connection under the client's next request).
"""

from __future__ import annotations

import orjson
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import is_structured_cloudevent

from kubetfx.components.predictor import error_policy
from kubetfx.components.predictor.schema_check import V2JsonRequest

_V1_PREFIX, _V1_SUFFIX = "/v1/models/", ":predict"
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Content types read as JSON (kserve reads octet-stream as JSON too); a missing one counts as JSON.
_JSON_MEDIA_TYPES = (b"application/json", b"application/octet-stream", b"text/json")


def inference_route(path: str) -> tuple[str, str] | None:
    """``(protocol, model name)`` for the two JSON inference paths, else None."""
    if path.startswith(_V1_PREFIX) and path.endswith(_V1_SUFFIX):
        name = path[len(_V1_PREFIX):-len(_V1_SUFFIX)]
        return ("v1", name) if name and "/" not in name else None
    if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
        name = path[len(_V2_PREFIX):-len(_V2_SUFFIX)]
        return ("v2", name) if name and "/" not in name else None
    return None


class _Request:
    """What the front door reads from the headers, in one pass."""

    __slots__ = ("media_type", "content_length", "binary_json_length", "cloudevent", "request_id")

    def __init__(self, headers):
        self.media_type = None
        self.content_length = None
        self.binary_json_length = None  # V2 binary tensor extension: the length of the JSON part
        self.cloudevent = False  # binary-mode CloudEvent headers
        self.request_id = None  # x-request-id (set by Istio/KServe or the client): the prediction log's request id
        for name, value in headers:
            if name == b"content-type":
                self.media_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"content-length":
                self.content_length = int(value) if value.isdigit() else None
            elif name == b"inference-header-content-length":
                self.binary_json_length = value
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")[:200]
            elif name.startswith(b"ce-"):
                self.cloudevent = True
        if self.media_type == b"application/cloudevents+json":
            self.cloudevent = True


def _binary_v2_request(body: bytes, json_length: bytes, model_name: str) -> InferRequest:
    """A V2 request with binary tensors (JSON header + raw data), decoded by kserve; any decoding failure is a 400."""
    try:
        length = int(json_length)
    except ValueError:
        raise error_policy.InvalidInput(f"Inference-Header-Content-Length must be an integer, got "
                                        f"'{json_length.decode('latin-1')[:40]}'") from None
    if not 0 < length <= len(body):
        raise error_policy.InvalidInput(f"Inference-Header-Content-Length {length} does not fit the "
                                        f"{len(body)}-byte body")
    try:
        return InferRequest.from_bytes(body, length, model_name)
    except error_policy.InvalidInput:
        raise
    except Exception as err:  # kserve's decoder trusts the client: KeyError, TypeError, struct.error, ...
        raise error_policy.InvalidInput(f"malformed V2 binary request: {type(err).__name__}: {str(err)[:200]} (expected "
                                        'a JSON header {"inputs": [{"name", "datatype", "shape", "parameters": '
                                        '{"binary_data_size": N}}, ...]} followed by the tensors\' bytes)') from None


def _encode(response) -> tuple[bytes, list]:
    """The model's answer as body bytes and extra headers (kserve's encoding for an ``InferResponse``)."""
    if isinstance(response, InferResponse):
        response, json_length = response.to_rest()
        if json_length is not None:  # binary outputs
            return response, [(b"inference-header-content-length", str(json_length).encode())]
    return orjson.dumps(response), []


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it is over ``limit`` bytes."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("the client went away while sending the request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _respond(send, status: int, body: bytes, extra_headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


async def _respond_error(send, scope, exc: BaseException) -> None:
    outcome = error_policy.classify(exc)
    error_policy.report(outcome, exc, f"{scope['method']} {scope['path']}")
    await _respond(send, outcome.http_status, error_policy.error_body(outcome))


class RestFrontDoor:
    """ASGI app wrapping kserve's (see the module doc). ``registry``: kserve's ModelRepository."""

    def __init__(self, app, registry, max_request_bytes: int, fast_path_types: tuple):
        self.app = app
        self.registry = registry
        self.max_request_bytes = int(max_request_bytes)
        self.fast_path_types = fast_path_types  # model classes whose JSON requests are answered here

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            await self._pass_on(scope, receive, send, None)  # probes, metadata, /metrics: no body to cap
            return
        request = _Request(scope["headers"])
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            body = None
        else:
            try:
                body = await _read_body(receive, self.max_request_bytes)
            except ConnectionResetError:
                return  # nobody to answer
        if body is None:
            await _respond_error(send, scope, error_policy.PayloadTooLarge(
                f"the request body is larger than this server takes ({self.max_request_bytes:,} bytes; "
                "--max_request_bytes): send fewer instances per request"))
            return
        route = None if request.cloudevent or scope["method"] != "POST" else inference_route(scope["path"])
        model = self.registry.get_model(route[1]) if route else None
        if model is not None and isinstance(model, self.fast_path_types):
            await self._infer(scope, send, request, body, route[0], model)
        else:
            await self._pass_on(scope, receive, send, body)

    async def _infer(self, scope, send, request: _Request, body: bytes, protocol: str, model) -> None:
        """The fast path: parse, run the model (kserve's Model.__call__), write JSON."""
        try:
            if request.media_type is not None and request.media_type not in _JSON_MEDIA_TYPES:
                raise error_policy.UnsupportedContentType(
                    f"Content-Type '{request.media_type.decode('latin-1')[:80]}' is not supported: send the request "
                    "as JSON with Content-Type: application/json")
            if protocol == "v2" and request.binary_json_length is not None:
                payload = _binary_v2_request(body, request.binary_json_length, model.name)
            else:
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError as err:
                    raise error_policy.InvalidInput(f"the request body is not valid JSON: {err}") from None
                if protocol == "v2":
                    payload = V2JsonRequest(payload)
                elif type(payload) is dict and "specversion" in payload and is_structured_cloudevent(payload):
                    payload = payload["data"]  # as kserve does: a structured CloudEvent sent as plain JSON
            if not model.ready:
                raise ModelNotReady(model.name)
            response, _headers = await model(payload, headers={"x-request-id": request.request_id}
                                             if request.request_id else None)
            answer, extra_headers = _encode(response)
        except Exception as exc:
            await _respond_error(send, scope, exc)
            return
        await _respond(send, 200, answer, extra_headers)

    async def _pass_on(self, scope, receive, send, body: bytes | None) -> None:
        """To kserve's app (``body``: already read, handed over again); an exception after its answer ends here."""
        replayed = body is None
        started = completed = False

        async def receive_again():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_tracked(message):
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive_again, send_tracked)
        except Exception as exc:
            if completed:
                return  # kserve's error middleware answered (and our handler logged) before re-raising
            if started:
                raise  # half a response is out: only closing the connection ends it
            await _respond_error(send, scope, exc)
