"""A client's mistake is a 4xx in one shape, one log line, and never costs the service memory.

Public BentoML routes only: an ASGI middleware (``Service.add_asgi_middleware``) and a
``logging.Filter`` on the logger BentoML reports request errors through.

- A body over ``CREDITFLOW_MAX_BODY_BYTES`` is answered 413 before it is read: at once when its
  ``Content-Length`` says so, and, for a chunked body (no length), as soon as the bytes received
  pass the limit. Nothing is read past the limit.
- The JSON endpoints take JSON only: another ``Content-Type`` (multipart, a form, text) is 415,
  before BentoML's parsers see it (a multipart body without a boundary was a 500).
- Every 4xx body, BentoML's or Starlette's, has one shape (:data:`CLIENT_ERROR_SCHEMA`):
  ``{"error": {"status": 400, "message": "...", "fields": [{"field": "...", "message": "..."}]}}``.
- ``/docs.json`` says so: our title and the package's version, request bodies required, the
  4xx answers with their schema, the server's limit on a batch (``maxItems``).
- Every 4xx is counted, once per field it names (``rejected(endpoint, field)``; the service counts
  them in ``creditflow_rejected_requests_total`` and in its statistics): see :func:`counted_field`
  and :func:`endpoint_label`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FIELD_ERROR_SCHEMA = {
    "type": "object",
    "title": "FieldError",
    "required": ["field", "message"],
    "properties": {
        "field": {"type": "string", "description": "dotted path, e.g. applications.0.person_age"},
        "message": {"type": "string"},
    },
}
CLIENT_ERROR_SCHEMA = {
    "type": "object",
    "title": "ClientError",
    "description": "The body of every 4xx answer.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message", "fields"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status, again"},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "description": "the fields that broke the contract (empty if none)",
                    "items": {"$ref": "#/components/schemas/FieldError"},
                },
            },
        }
    },
}
# The 4xx answers of each JSON endpoint, documented in /docs.json.
CLIENT_ERRORS = {
    400: "Invalid JSON, or fields that break the data contract (named in `fields`)",
    405: "Not a POST",
    413: "Body over CREDITFLOW_MAX_BODY_BYTES, or (/predict_batch) more applications than "
    "CREDITFLOW_MAX_BATCH",
    415: "Content-Type is not application/json",
}


def client_error(status: int, message: str, fields: Iterable[dict] = ()) -> bytes:
    """The one 4xx body, encoded."""
    body = {"error": {"status": status, "message": message, "fields": list(fields)}}
    return json.dumps(body, separators=(",", ":")).encode()


def _dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


# The labels of a rejection whose answer names no field, or a field or a path we do not know.
NO_FIELD = "_body"
OTHER_FIELD = "_other"
OTHER_ENDPOINT = "_other"


def endpoint_label(path: str, routes: frozenset[str]) -> str:
    """The label a request is counted under: its route without the slash (``/predict`` ->
    ``predict``) if it is one of ``routes``, else :data:`OTHER_ENDPOINT` (the labels must not
    grow with the paths clients try)."""
    return path[1:] if path in routes else OTHER_ENDPOINT


def counted_field(field: str, names: frozenset[str]) -> str:
    """The label a rejected field is counted under: the last part of its dotted path that is a
    field we know (``applications.3.person_age`` -> ``person_age``; a union's branch after the
    field, ``person_age.float``, -> ``person_age``); :data:`NO_FIELD` for no path,
    :data:`OTHER_FIELD` for one without a known name (a client's own key: the labels must not
    grow with what clients send)."""
    parts = [part for part in field.split(".") if part and not part.isdigit()]
    if not parts:
        return NO_FIELD
    return next((part for part in reversed(parts) if part in names), OTHER_FIELD)


def reshape(status: int, content_type: bytes, body: bytes) -> bytes:
    """BentoML's or Starlette's 4xx body in our shape. BentoML answers a validation error with
    ``{"error": ..., "detail": [pydantic errors]}``, another of its exceptions with
    ``[{"error": ...}]`` (a list), Starlette with plain text."""
    message, fields = HTTPStatus(status).phrase, []
    payload: Any = None
    if content_type.startswith(b"application/json"):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
    elif body.strip():
        message = body.decode("utf-8", "replace").strip()
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if isinstance(payload, dict):
        if isinstance(payload.get("error"), dict):  # already ours
            return body
        detail = payload.get("detail")
        if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
            whole = [str(d.get("msg", "")) for d in detail if not d.get("loc")]
            fields = [{"field": _dotted(d["loc"]), "message": str(d.get("msg", ""))}
                      for d in detail if d.get("loc")]  # fmt: skip
            parts = whole + ([f"{len(fields)} invalid field(s)"] if fields else [])
            message = "; ".join(parts) or message
        elif isinstance(payload.get("error"), str):
            message = payload["error"]
    return client_error(status, message, fields)


def _is_json(content_type: bytes) -> bool:
    if content_type == b"application/json":  # the usual case, first
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


class ClientErrors:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        json_routes: Iterable[str],
        title: str,
        version: str,
        description: str = "",
        rejected: Callable[[str, str], None] | None = None,
        fields: Iterable[str] = (),
        max_items: Mapping[str, Mapping[str, int]] | None = None,
        named_routes: Iterable[str] = (),
        route_errors: Mapping[str, Mapping[int, str]] | None = None,
        route_answers: Mapping[str, Mapping[int, str]] | None = None,
        bearer_routes: Iterable[str] = (),
    ) -> None:
        """``rejected(endpoint, field)`` is called for each 4xx, once per field its answer names
        (once with :data:`NO_FIELD` if none): ``endpoint`` as :func:`endpoint_label` names it
        among the JSON routes and ``named_routes`` (the probes, /metrics), ``field`` as
        :func:`counted_field` names it among ``fields``. ``max_items``: route -> {array
        property of its body: the most items this server takes}, published in /docs.json as
        ``maxItems``; ``route_errors`` and ``route_answers``: route -> {status: description},
        the 4xx (in the :data:`CLIENT_ERROR_SCHEMA`) and the other successes (with the 200's
        body) a route answers besides every JSON route's; ``bearer_routes``: the routes that
        require ``Authorization: Bearer`` (bento/auth.py), documented as such."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_routes = frozenset(json_routes)
        self.routes = self.json_routes | frozenset(named_routes)
        self.info = {"title": title, "version": version, "description": description}
        self.rejected = rejected
        self.fields = frozenset(fields)
        self.max_items = max_items or {}
        self.route_errors = route_errors or {}
        self.route_answers = route_answers or {}
        self.bearer_routes = tuple(bearer_routes)
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/docs.json" and scope["method"] == "GET":
            await self._docs(scope, receive, send)
            return
        length = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if length is not None:
            if not length.isdigit():
                await self._refuse(send, path, 400, "Content-Length is not a number")
                return
            if int(length) > self.max_body_bytes:
                await self._too_large(send, path)
                return
        if path in self.json_routes and content_type and not _is_json(content_type):
            await self._refuse(send, path, 415, "Content-Type must be application/json")
            return
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._bounded(receive, send, path)
            if receive is None:
                return
        await self.app(scope, receive, self._reshaping(send, path))

    def _count(self, path: str, body: bytes) -> None:
        """A 4xx answer (``body`` in our shape), counted once per field it names."""
        if self.rejected is None:
            return
        endpoint = endpoint_label(path, self.routes)
        try:
            named = [str(f["field"]) for f in json.loads(body)["error"]["fields"]]
        except (ValueError, KeyError, TypeError):
            named = []
        for field in sorted({counted_field(f, self.fields) for f in named} or {NO_FIELD}):
            self.rejected(endpoint, field)

    async def _bounded(self, receive: Receive, send: Send, path: str) -> Receive | None:
        """A body of unknown length (chunked), read here up to the limit; None if it passed it
        (answered 413)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return _replay([], message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send, path)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay(chunks, None, receive)

    async def _too_large(self, send: Send, path: str) -> None:
        message = f"body over {self.max_body_bytes} bytes (CREDITFLOW_MAX_BODY_BYTES)"
        await self._refuse(send, path, 413, message)

    async def _refuse(self, send: Send, path: str, status: int, message: str) -> None:
        """Answered without reading the body; the connection closes after (its unread body)."""
        body = client_error(status, message)
        self._count(path, body)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def _reshaping(self, send: Send, path: str) -> Send:
        """``send`` that rewrites a 4xx answer's body into our shape (and counts it); others pass
        untouched."""
        held: dict[str, Any] = {}

        async def reshaping_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500:
                    held["start"], held["body"] = message, []
                    return
            elif held and message["type"] == "http.response.body":
                held["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop("start")
                headers = [(k, v) for k, v in start["headers"]
                           if k.lower() not in (b"content-length", b"content-type")]  # fmt: skip
                content_type = dict(start["headers"]).get(b"content-type", b"")
                body = reshape(start["status"], content_type, b"".join(held.pop("body")))
                self._count(path, body)
                headers += [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]  # fmt: skip
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        return reshaping_send

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's spec, corrected once per process (see :func:`corrected_spec`)."""
        if self._spec is None:
            start: dict[str, Any] = {}
            chunks: list[bytes] = []

            async def keep(message: Message) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                else:
                    chunks.append(message.get("body", b""))

            await self.app(scope, receive, keep)
            if start.get("status") != 200:
                answer = self._reshaping(send, scope["path"])
                await answer(start)
                await answer({"type": "http.response.body", "body": b"".join(chunks)})
                return
            spec = corrected_spec(json.loads(b"".join(chunks)), self.info, self.json_routes,
                                  self.max_items, self.route_errors, self.route_answers,
                                  self.bearer_routes)  # fmt: skip
            self._spec = json.dumps(spec).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._spec)).encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": self._spec})


def _replay(chunks: list[bytes], last: Message | None, receive: Receive | None = None) -> Receive:
    """A ``receive`` that gives the body read so far in one message, then the rest."""
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    if last is not None:
        pending = [last]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    return replayed


# How /docs.json names the bearer token scheme of bento/auth.py.
BEARER_SCHEME = "bearerToken"


def corrected_spec(
    spec: dict,
    info: dict[str, str],
    json_routes: Iterable[str],
    max_items: Mapping[str, Mapping[str, int]] | None = None,
    route_errors: Mapping[str, Mapping[int, str]] | None = None,
    route_answers: Mapping[str, Mapping[int, str]] | None = None,
    bearer_routes: Iterable[str] = (),
) -> dict:
    """BentoML's OpenAPI spec with our title, version and description, the JSON endpoints'
    bodies required and their 4xx answers documented with :data:`CLIENT_ERROR_SCHEMA` (BentoML
    documents a 400 whose ``detail`` is a string, and a 404 they never answer), and the limits
    this server puts on arrays (``max_items``, as ``maxItems``: a limit set when the server
    starts, which the request model cannot carry). ``route_errors``, ``route_answers`` and
    ``bearer_routes``: as :class:`ClientErrors` takes them."""
    spec["info"] = {**info}
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for stale in ("InvalidArgument", "NotFound"):
        schemas.pop(stale, None)
    schemas["ClientError"] = CLIENT_ERROR_SCHEMA
    schemas["FieldError"] = FIELD_ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ClientError"}}}
    for route in json_routes:
        post = spec["paths"][route]["post"]
        post["requestBody"]["required"] = True
        responses = post["responses"]
        for stale in ("400", "404"):
            responses.pop(stale, None)
        for status, description in CLIENT_ERRORS.items():
            responses[str(status)] = {"description": description, "content": ref}
    for route, errors in (route_errors or {}).items():
        responses = spec["paths"][route]["post"]["responses"]
        for status, description in errors.items():
            responses[str(status)] = {"description": description, "content": ref}
    for route, answers in (route_answers or {}).items():
        responses = spec["paths"][route]["post"]["responses"]
        for status, description in answers.items():
            responses[str(status)] = {**responses.get("200", {}), "description": description}
    for route in bearer_routes:
        schemes = spec["components"].setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {"type": "http", "scheme": "bearer",
                                  "description": "CREDITFLOW_API_TOKEN of the server"}  # fmt: skip
        spec["paths"][route]["post"]["security"] = [{BEARER_SCHEME: []}]
    for route, limits in (max_items or {}).items():
        body = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        for name, limit in limits.items():
            body["schema"]["properties"][name]["maxItems"] = limit
    return spec


class ClientErrorLog(logging.Filter):
    """BentoML logs every error of a request at ERROR with its traceback (``log_exception``);
    a client's (a pydantic ValidationError, a BentoMLException under 500) becomes one INFO
    line, without the request's values (they may be personal data)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        try:
            summary = _client_fault(exc)
        except Exception:  # a log filter must never break the request that logs
            summary = None
        if summary is None:
            return True
        record.msg = f"{record.getMessage()}: client error: {summary}"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _client_fault(exc: BaseException) -> str | None:
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        fields = sorted({_dotted(e["loc"]) or e["type"] for e in exc.errors()})
        return f"{exc.error_count()} validation error(s): {', '.join(fields)}"
    if isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
        return f"{int(exc.error_code)} {type(exc).__name__}: {exc}"
    return None


# The logger of BentoML's log_exception (bentoml/_internal/server/http_app.py).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def install_log_filter() -> None:
    """Once per process (a module imported twice must not stack two filters)."""
    target = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorLog) for f in target.filters):
        target.addFilter(ClientErrorLog())
