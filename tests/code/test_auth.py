"""The bearer token of the write endpoints (bento/auth.py): 401 in the one 4xx shape, counted,
before the body is read; other routes untouched."""

from __future__ import annotations

import asyncio
import json

import pytest

from creditflow.bento.auth import MISSING, UNSET, WRONG, BearerAuth

TOKEN = "s3cret-token"


def _request(path: str, headers: dict[str, str], token: str | None = TOKEN):
    """(status, headers, body, whether the app ran, whether the body was read, counted)."""
    ran, read, counted = [], [], []

    async def app(scope, receive, send):
        ran.append(True)
        read.append(await receive())
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        read.append(True)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    answer = {}

    async def send(message):
        if message["type"] == "http.response.start":
            answer.update(status=message["status"], headers=dict(message["headers"]))
        else:
            answer["body"] = message["body"]

    middleware = BearerAuth(app, protected=["/feedback"], token=token,
                            unauthorized=counted.append)  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    asyncio.run(middleware(scope, receive, send))
    return answer, bool(ran), bool(read), counted


@pytest.mark.parametrize(
    ("headers", "token", "message"),
    [
        ({}, TOKEN, MISSING),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, TOKEN, MISSING),
        ({"Authorization": "Bearer "}, TOKEN, MISSING),
        ({"Authorization": "Bearer s3cret-tokeN"}, TOKEN, WRONG),
        ({"Authorization": f"Bearer {TOKEN}x"}, TOKEN, WRONG),
        ({"Authorization": f"Bearer {TOKEN}"}, None, UNSET),  # no token configured: all refused
        ({"Authorization": "Bearer "}, "", UNSET),
    ],
)
def test_a_request_without_the_token_is_401_and_counted(headers, token, message):
    answer, ran, read, counted = _request("/feedback", headers, token)
    assert answer["status"] == 401 and not ran and not read
    assert json.loads(answer["body"]) == {"error": {"status": 401, "message": message,
                                                    "fields": []}}  # fmt: skip
    assert answer["headers"][b"www-authenticate"].startswith(b"Bearer")
    assert counted == ["feedback"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_right_token_passes(scheme):
    answer, ran, _, counted = _request("/feedback/", {"Authorization": f"{scheme} {TOKEN}"})
    assert answer["status"] == 201 and ran and counted == []


def test_open_routes_need_no_token():
    for path in ("/predict", "/predict_batch", "/metrics", "/feedbackx"):
        answer, ran, _, counted = _request(path, {})
        assert answer["status"] == 201 and ran and counted == [], path
