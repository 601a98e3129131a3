"""Request checks that keep a local model server local.

- Host allowlist (localhost, 127.0.0.1, [::1], the bound host) defeats DNS rebinding: a page
  on evil.example that re-points its name at 127.0.0.1 still sends `Host: evil.example`.
- State-changing requests (POST/PUT/PATCH/DELETE) from a foreign Origin are refused: no page
  on another site can start runs or delete history, and no CORS headers are ever sent.
- Off loopback a token is required (as Jupyter does): `?token=` once (then a cookie),
  or `Authorization: Bearer`.
- Every response carries a Content-Security-Policy that allows only our own files.

A pure ASGI middleware (not BaseHTTPMiddleware) so that SSE streams and client-disconnect
detection pass through untouched.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
COOKIE = "llmvis_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server will require: the user's, a random one off loopback, else none."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def split_host(value: str) -> str | None:
    """`name[:port]` or `[v6]:port` → the lower-cased name (brackets stripped); None if malformed."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/@\\ ?#"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (len(value) > end + 1 and value[end + 1] != ":"):
            return None
        return value[1:end]
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


class Guard:
    def __init__(self, app: ASGIApp, *, bound_host: str, token: str | None) -> None:
        self.app = app
        self.token = token
        self.allow_any_host = is_wildcard(bound_host)
        self.allowed_hosts = set(LOOPBACK_NAMES) | {bound_host.strip("[]").lower()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._check(scope, headers)
        if refusal is not None:
            await _plain(send, *refusal)
            return
        set_cookie = self._token_cookie(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]  # a route may set its own
                if set_cookie:
                    extra.append((b"set-cookie", set_cookie.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host_header = headers.get("host")
        if host_header is None:
            return 400, "missing Host header"
        host = split_host(host_header)
        if host is None:
            return 400, "malformed Host header"
        if not self.allow_any_host and host not in self.allowed_hosts:
            return 403, f"Host {host!r} is not allowed (DNS rebinding protection); use http://127.0.0.1"
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, scope.get("scheme", "http"), host_header):
                return 403, "cross-origin request refused"
            if headers.get("sec-fetch-site") == "cross-site":
                return 403, "cross-site request refused"
        if self.token is not None and not self._authorised(scope, headers):
            return 401, "a token is required: open the URL printed by `llmvis serve` (with ?token=...)"
        return None

    def _presented_tokens(self, scope: Scope, headers: dict[str, str]) -> list[str]:
        found: list[str] = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            found.append(auth[7:].strip())
        cookie = SimpleCookie()
        with contextlib.suppress(Exception):
            cookie.load(headers.get("cookie", ""))
        if COOKIE in cookie:
            found.append(cookie[COOKIE].value)
        found += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        return found

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        return any(hmac.compare_digest(t.encode(), expected) for t in self._presented_tokens(scope, headers))

    def _token_cookie(self, scope: Scope) -> str | None:
        """After a valid ?token=, remember it in a cookie so later requests need no query."""
        if self.token is None:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.token not in query.get("token", []):
            return None
        return f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"


def _same_origin(origin: str, scheme: str, host_header: str) -> bool:
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host_header.strip().lower()


async def _plain(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
