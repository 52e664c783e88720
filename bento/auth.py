"""A bearer token on the routes that write (``/feedback``) or administer, as ASGI middleware.

The protected routes are declared in one place (bento/service.py). A request to one of them
needs ``Authorization: Bearer <CREDITFLOW_API_TOKEN>``, compared in constant time
(``hmac.compare_digest``). A missing or wrong token, or a server with no token configured (then
nothing is writable), is answered 401 in the one 4xx shape (bento/middleware.py) with
``WWW-Authenticate: Bearer``, before the body is read, and counted (``unauthorized(endpoint)``;
the service counts it in ``creditflow_unauthorized_requests_total``). Scoring (``/predict``,
``/predict_batch``) writes nothing a client can read back and stays open.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from creditflow.bento.middleware import client_error, endpoint_label

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MISSING = "Authorization: Bearer <token> required"
WRONG = "invalid bearer token"
UNSET = "this server has no API token (CREDITFLOW_API_TOKEN): its write endpoints are closed"


class BearerAuth:
    """ASGI middleware: ``protected`` routes need the bearer ``token`` (None: refuse all)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        protected: Iterable[str],
        token: str | None,
        unauthorized: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.protected = frozenset(protected)
        self._expected = None if not token else token.encode()
        self.unauthorized = unauthorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path.rstrip("/") or path  # "/feedback/" is the same route
        if route not in self.protected:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if self.unauthorized is not None:
            self.unauthorized(endpoint_label(route, self.protected))
        body = client_error(401, refusal)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="creditflow"'), (b"connection", b"close"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request may not pass (None: it may)."""
        given = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if self._expected is None:
            return UNSET
        if given is None:
            return MISSING
        scheme, _, token = given.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return MISSING
        if not hmac.compare_digest(token.strip(), self._expected):
            return WRONG
        return None
