"""bento/middleware.py without a server: the ASGI middleware against a stand-in app, the 4xx
reshaping, the log filter (tests/service/test_hostile_http.py has them served)."""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus

import pytest

from creditflow.bento.middleware import ClientErrorLog, ClientErrors, corrected_spec, reshape

LIMIT = 1000


def _call(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
    """Runs the middleware over ``app`` for one request: (status, body, bytes it received)."""
    middleware = ClientErrors(app, max_body_bytes=LIMIT, json_routes=["/predict"], title="t",
                              version="1")  # fmt: skip
    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
               for i, c in enumerate(chunks)]  # fmt: skip
    received, sent = [], []

    async def receive():
        message = pending.pop(0) if pending else {"type": "http.disconnect"}
        received.append(message.get("body", b""))
        return message

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], body, sum(map(len, received))


async def _echo(scope, receive, send):
    """A stand-in endpoint: reads the whole body, answers it back with 200."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _answer(status: int, content_type: bytes, body: bytes):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type)]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return app


def test_a_declared_oversized_body_is_413_unread():
    status, body, read = _call(_echo, "POST", "/predict", {"Content-Length": str(LIMIT + 1)},
                               [b"x" * (LIMIT + 1)])  # fmt: skip
    assert status == 413 and read == 0
    assert json.loads(body)["error"]["status"] == 413


def test_a_chunked_body_is_read_up_to_the_limit_only():
    status, _, read = _call(_echo, "POST", "/predict", {}, [b"x" * 400] * 10)
    assert status == 413 and read <= LIMIT + 400
    status, body, _ = _call(_echo, "POST", "/predict", {}, [b"x" * 400, b"y" * 400])
    assert status == 200 and body == b"x" * 400 + b"y" * 400


def test_a_body_within_the_limit_passes():
    status, body, _ = _call(_echo, "POST", "/predict", {"Content-Length": "3",
                                                        "Content-Type": "application/json"},
                            [b"{}\n"])  # fmt: skip
    assert (status, body) == (200, b"{}\n")


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain"]
)
def test_a_json_route_refuses_other_content_types(content_type):
    status, body, read = _call(_echo, "POST", "/predict",
                               {"Content-Type": content_type, "Content-Length": "2"},
                               [b"{}"])  # fmt: skip
    assert status == 415 and read == 0
    assert json.loads(body)["error"]["message"] == "Content-Type must be application/json"


@pytest.mark.parametrize(
    ("content_type", "body", "message", "fields"),
    [
        (b"application/json", b'{"error": "2 validation error for X", "detail": ['
         b'{"type": "json_invalid", "loc": [], "msg": "Invalid JSON"},'
         b'{"type": "int_type", "loc": ["applications", 0, "person_age"], "msg": "not an int"}]}',
         "Invalid JSON; 1 invalid field(s)",
         [{"field": "applications.0.person_age", "message": "not an int"}]),
        (b"application/json", b'[{"error": "at most 5"}]', "at most 5", []),
        (b"text/plain; charset=utf-8", b"Not Found", "Not Found", []),
        (b"application/json", b"", "Bad Request", []),
    ],
)  # fmt: skip
def test_every_4xx_body_is_reshaped(content_type, body, message, fields):
    status, answered, _ = _call(_answer(400, content_type, body), "GET", "/x", {}, [b""])
    assert status == 400
    assert json.loads(answered) == {"error": {"status": 400, "message": message,
                                              "fields": fields}}  # fmt: skip
    assert json.loads(reshape(400, content_type, body)) == json.loads(answered)


def test_other_answers_pass_untouched():
    for status in (200, 500, 503):
        assert _call(_answer(status, b"text/plain", b"as is"), "GET", "/x", {}, [b""]) == (
            status, b"as is", 0)  # fmt: skip


def test_the_spec_documents_the_errors():
    spec = {"info": {"title": "creditflow", "version": "None"}, "paths": {"/predict": {"post": {
        "requestBody": {"content": {}}, "responses": {"200": {}, "400": {}, "404": {}}}}},
        "components": {"schemas": {"InvalidArgument": {}}}}  # fmt: skip
    fixed = corrected_spec(spec, {"title": "t", "version": "1"}, ["/predict"])
    post = fixed["paths"]["/predict"]["post"]
    assert fixed["info"] == {"title": "t", "version": "1"}
    assert post["requestBody"]["required"] is True
    assert sorted(post["responses"]) == ["200", "400", "405", "413", "415"]
    assert "InvalidArgument" not in fixed["components"]["schemas"]


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        import sys

        return logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "Exception on %s [%s]",
                                 ("/predict", "POST"), sys.exc_info())  # fmt: skip


def test_a_client_error_is_one_info_line_without_its_values():
    from bentoml.exceptions import BentoMLException, InternalServerError
    from pydantic import BaseModel, ValidationError

    class Model(BaseModel):
        person_age: int

    try:
        Model(person_age="secret-value")
    except ValidationError as exc:
        invalid = exc
    too_big = BentoMLException("too big", error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    for exc in (invalid, too_big):
        record = _record(exc)
        assert ClientErrorLog().filter(record)
        assert record.levelno == logging.INFO and record.exc_info is None
        line = logging.Formatter().format(record)
        assert "\n" not in line and "secret-value" not in line
        assert line.startswith("Exception on /predict [POST]: client error: ")
    for exc in (InternalServerError("ours"), RuntimeError("ours")):
        record = _record(exc)
        assert ClientErrorLog().filter(record)
        assert record.levelno == logging.ERROR and record.exc_info is not None
