"""Hostile HTTP against a served service: a client's mistake is a 4xx in one shape, one log line,
never a 5xx, and never costs the worker the size of its body (bento/middleware.py)."""

from __future__ import annotations

import json
import os
import socket
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from creditflow.config import MAX_BODY_BYTES_DEFAULT, environment
from creditflow.ingestion.offline import newest_applications

JSON_ROUTES = ("/predict", "/predict_batch", "/noop")


@pytest.fixture(scope="module")
def served(demo_home, tmp_path_factory, serving):
    """`bentoml serve` of the service from the package: (process, url, log file)."""
    folder = tmp_path_factory.mktemp("hostile")
    env = {**os.environ, **environment(demo_home.settings), "CREDITFLOW_MAX_BATCH": "5"}
    env.pop("CREDITFLOW_MAX_BODY_BYTES", None)
    with serving("creditflow.bento.service:CreditScorer", env, folder) as (process, url):
        yield process, url, folder / "serve.log"


@pytest.fixture(scope="module")
def url(served) -> str:
    return served[1]


@pytest.fixture(scope="module")
def application(demo_home) -> dict:
    return newest_applications(demo_home.settings, 1)[0]


def _worker_rss(process) -> int:
    """The resident memory of the server's processes (the worker is one of its children)."""
    return sum(p.memory_info().rss for p in psutil.Process(process.pid).children(recursive=True))


def _assert_client_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"status", "message", "fields"}, body
    assert error["status"] == status and error["message"], body
    assert all(set(f) == {"field", "message"} for f in error["fields"]), body
    return error


def _hostile(application: dict) -> list[tuple[str, str, dict, int, str | None]]:
    """(label, route, httpx request kwargs, expected status, a field the answer names)."""
    as_json = {"Content-Type": "application/json"}
    nan = json.dumps({**application, "person_income": float("nan")})
    cases = []
    for route in JSON_ROUTES:
        cases += [
            ("multipart without boundary", route,
             {"content": b"{}", "headers": {"Content-Type": "multipart/form-data"}}, 415, None),
            ("multipart with boundary", route,
             {"files": {"f": ("a.json", json.dumps(application).encode())}}, 415, None),
            ("form", route, {"data": {"person_age": "30"}}, 415, None),
            ("text", route,
             {"content": json.dumps(application), "headers": {"Content-Type": "text/plain"}},
             415, None),
            ("pickle", route, {"content": b"\x80\x04N.",
                               "headers": {"Content-Type": "application/vnd.bentoml+pickle"}},
             415, None),
            ("invalid JSON", route, {"content": b"{nope", "headers": as_json}, 400, None),
            ("empty body", route, {"content": b"", "headers": as_json}, 400, None),
            ("a list", route, {"content": b"[1, 2]", "headers": as_json}, 400, None),
        ]  # fmt: skip
    for route, wrap, prefix in (("/predict", lambda a: a, ""), ("/noop", lambda a: a, ""),
                                ("/predict_batch", lambda a: {"applications": [a]},
                                 "applications.0.")):  # fmt: skip
        cases += [
            ("boolean for a number", route, {"json": wrap({**application, "person_age": True})},
             400, f"{prefix}person_age"),
            ("string for a number", route, {"json": wrap({**application, "person_age": "30"})},
             400, f"{prefix}person_age"),
            ("NaN", route, {"content": nan if route != "/predict_batch"
                            else f'{{"applications": [{nan}]}}', "headers": as_json},
             400, f"{prefix}person_income"),
            ("missing field", route,
             {"json": wrap({k: v for k, v in application.items() if k != "loan_amnt"})},
             400, f"{prefix}loan_amnt"),
        ]  # fmt: skip
    cases += [
        ("too many applications", "/predict_batch", {"json": {"applications": [application] * 6}},
         413, None),
        ("no applications", "/predict_batch", {"json": {"applications": []}}, 400,
         "applications"),
        ("unknown route", "/nope", {"json": application}, 404, None),
    ]  # fmt: skip
    return cases


def test_hostile_requests_get_a_4xx_in_one_shape_and_one_log_line(served, url, application):
    process, _, log = served
    offset = log.stat().st_size
    failures = []
    for label, route, request, status, field in _hostile(application):
        response = httpx.post(f"{url}{route}", timeout=10, **request)
        try:
            error = _assert_client_error(response, status)
            if field is not None:
                assert field in [f["field"] for f in error["fields"]], error
        except AssertionError as exc:
            failures.append(f"{label} {route}: {exc}")
    assert not failures, "\n".join(failures)
    _assert_client_error(httpx.get(f"{url}/predict", timeout=10), 405)
    _assert_client_error(httpx.post(f"{url}/docs.json", json={}, timeout=10), 405)
    written = log.read_text()[offset:]
    assert "Traceback" not in written and "[ERROR]" not in written, written[-3000:]
    assert "client error" in written  # BentoML's error lines, one line each
    assert httpx.post(f"{url}/predict", json=application, timeout=10).status_code == 200


def test_an_oversized_body_is_413_before_it_is_read(served, url, application):
    process = served[0]
    body = json.dumps({"applications": [application] * 250_000}).encode()  # ~56 MB
    assert len(body) > 50 * 2**20
    before = _worker_rss(process)
    response = httpx.post(f"{url}/predict_batch", content=body, timeout=30,
                          headers={"Content-Type": "application/json"})  # fmt: skip
    grown = _worker_rss(process) - before
    assert grown < 20 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB"
    error = _assert_client_error(response, 413)
    assert str(MAX_BODY_BYTES_DEFAULT) in error["message"]
    assert httpx.post(f"{url}/predict", json=application, timeout=10).status_code == 200


def test_an_oversized_chunked_body_is_413_at_the_limit(served, url, application):
    """No Content-Length: the bytes are counted as they come, and reading stops at the limit
    (the client is still sending when the 413 comes back)."""
    process = served[0]
    host, port = urlsplit(url).hostname, urlsplit(url).port
    before = _worker_rss(process)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /predict_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        chunk = b" " * 65536
        sent = 0
        try:
            while sent < 64 * 2**20:  # never finished: an endless body
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed
        answer = sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:500]
    assert json.loads(body)["error"]["status"] == 413
    assert sent < 32 * 2**20, f"the server read {sent} bytes"
    grown = _worker_rss(process) - before
    assert grown < 20 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB"


def test_a_small_chunked_body_is_served(url, application):
    response = httpx.post(f"{url}/predict", content=iter([json.dumps(application).encode()]),
                          headers={"Content-Type": "application/json"}, timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    assert "transfer-encoding" in {k.lower() for k in response.request.headers}


def test_the_openapi_spec_is_accurate(url):
    spec = httpx.get(f"{url}/docs.json", timeout=10).json()
    assert spec["info"]["title"] == "creditflow scoring API"
    assert spec["info"]["version"] == version("creditflow")
    schemas = spec["components"]["schemas"]
    error = schemas["ClientError"]["properties"]["error"]
    assert error["required"] == ["status", "message", "fields"]
    assert error["properties"]["fields"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert "FieldError" in schemas and "InvalidArgument" not in schemas
    ref = {"$ref": "#/components/schemas/ClientError"}
    for route in JSON_ROUTES:
        post = spec["paths"][route]["post"]
        assert post["requestBody"]["required"] is True
        responses = post["responses"]
        for status in ("400", "405", "413", "415"):
            assert responses[status]["content"]["application/json"]["schema"] == ref, route
        assert "404" not in responses


def test_no_client_error_in_the_log_is_a_traceback(served):
    """Last: the whole module's log, from start to here."""
    log: Path = served[2]
    text = log.read_text()
    assert "Traceback" not in text, text[text.index("Traceback") - 500 :][:3000]
