"""What every request to grid-ops serve passes before the API sees it, and what every
answer carries (an ASGI middleware around the whole app, so errors and refusals too):

- its ``Host`` is one the server answers to: the bind address, ``localhost``,
  ``127.0.0.1`` or ``[::1]`` with the server's port, or a ``--allow-host`` name (DNS
  rebinding: a page of another site that resolves its name to 127.0.0.1 sends that name);
- a state-changing request (POST, PUT, PATCH, DELETE) with an ``Origin`` comes from the
  server's own origin (a cross-site form or script does not; ``Origin: null`` neither);
- the bearer token, on every path but the page's own files (they hold no data): the
  serve token, or on a cluster with users a user's own token (``users`` says whether the
  head knows it; the request's controller calls then carry it);
- a body is JSON (``Content-Type: application/json``) and at most ``MAX_BODY`` bytes;
- the security headers (``HEADERS``): a Content-Security-Policy without inline script or
  style, no framing, no sniffing, no referrer, no caching.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse

from grid_ops.errors import UsageError
from grid_ops.server import token as tokens

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 2**20  # bytes of a request body (the largest job request is far below)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# host[:port] of a Host header or an Origin: a DNS name or IPv4 address, or [IPv6].
AUTHORITY = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::([0-9]{1,5}))?")
SHOWN = 100  # characters of a refused Host or Origin quoted back


def host_name(text: str, option: str = "--allow-host") -> str:
    """A host name as Host headers carry it (lower case, an IPv6 address in brackets);
    UsageError (naming ``option``) when ``text`` is not one (a port, a scheme, a path)."""
    name = text.strip().lower()
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # a bare IPv6 address
    found = AUTHORITY.fullmatch(name)
    if found is None or found[2] is not None:
        raise UsageError(
            f"{option} {text!r} is not a host name.",
            f"Give the name (or address) alone, as clients write it: {option} grid.example.org",
        )
    return name


@dataclass(frozen=True)
class Hosts:
    """The names the server answers to: ``names`` with its own ``port`` (the bind
    address, ``own``, and loopback), ``allowed`` on any port (--allow-host: a proxy's
    name)."""

    own: str
    port: int
    names: frozenset[str]
    allowed: frozenset[str]

    @classmethod
    def of(cls, bind: str, port: int, allowed: Collection[str] = ()) -> Hosts:
        own = host_name(bind, "--bind")
        names = frozenset({own, *LOOPBACK_NAMES})
        return cls(own, port, names, frozenset(host_name(a) for a in allowed))

    def reach(self) -> str:
        """The host of the address to print: the bind address, or loopback for a
        wildcard bind (0.0.0.0, ::)."""
        return "127.0.0.1" if self.own in ("0.0.0.0", "[::]") else self.own

    def accepts(self, authority: str, default_port: int = 80) -> bool:
        """Whether a Host header's value (or an Origin's host[:port]) is one of ours."""
        found = AUTHORITY.fullmatch(authority.lower())
        if found is None:
            return False
        name, port = found[1], int(found[2]) if found[2] else default_port
        return name in self.allowed or (name in self.names and port == self.port)

    def same_origin(self, origin: str) -> bool:
        """Whether an Origin header names this server (http or https, behind a TLS
        proxy); never 'null'."""
        scheme, sep, authority = origin.partition("://")
        defaults = {"http": 80, "https": 443}
        return bool(sep) and scheme in defaults and self.accepts(authority, defaults[scheme])


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    hint: str

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        body = {"error": self.error, "hint": self.hint}
        return JSONResponse(body, status_code=self.status, headers=headers)


class Disconnected(Exception):
    """The client went away while its body was read."""


class Guard:
    """The ASGI middleware (see the module's docstring). ``token`` gives the token as it
    is now (None: refuse every request); ``public``: paths served without it (GET);
    ``users``: whether a bearer token is a user's (blocking: run in a thread), on a
    cluster with users."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: Hosts,
        token: Callable[[], str | None],
        public: Collection[str],
        max_body: int = MAX_BODY,
        users: Callable[[str], bool] | None = None,
    ) -> None:
        self.app, self.hosts, self.token = app, hosts, token
        self.public, self.max_body = frozenset(public), max_body
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_headers(send)
        headers = Headers(scope=scope)
        refusal = self.check(scope, headers)
        asker: str | None = None
        if refusal is not None and refusal.status == 401 and self.users is not None:
            given = tokens.bearer(headers.get("authorization"))
            if given is not None and await anyio.to_thread.run_sync(self.users, given):
                asker, refusal = given, check_body_headers(headers, self.max_body)
        if refusal is None and carries_body(headers):
            try:
                body = await read_body(receive, self.max_body)
            except Disconnected:
                return
            if body is None:
                refusal = too_large(self.max_body)
            else:
                receive = replay(body, receive)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        from grid_ops.drivers import control

        with control.acting_as(asker) if asker else contextlib.nullcontext():
            await self.app(scope, receive, send)

    def check(self, scope: Scope, headers: Headers) -> Refusal | None:
        """Why a request is refused before its body is read; None when it may go on."""
        method, path = scope["method"], scope["path"]
        return (
            self.check_host(headers)
            or self.check_origin(method, headers)
            or self.check_token(method, path, headers)
            or check_body_headers(headers, self.max_body)
        )

    def check_host(self, headers: Headers) -> Refusal | None:
        given = headers.getlist("host")
        if len(given) == 1 and self.hosts.accepts(given[0]):
            return None
        shown = ", ".join(repr(h[:SHOWN]) for h in given) or "none"
        return Refusal(
            400,
            f"This grid-ops server does not answer to the Host {shown} (a page of another "
            "site can point its own name at this address: DNS rebinding).",
            f"Reach it as http://127.0.0.1:{self.hosts.port}/, or start 'grid-ops serve' "
            "with --allow-host NAME for the name a proxy or your browser uses.",
        )

    def check_origin(self, method: str, headers: Headers) -> Refusal | None:
        origin = headers.get("origin")
        if method not in UNSAFE or origin is None or self.hosts.same_origin(origin):
            return None
        return Refusal(
            403,
            f"A {method} from another origin ({origin[:SHOWN]!r}) is refused: a page of "
            "another site cannot change this cluster.",
            "Send it from the dashboard itself, or from a client that sends no Origin "
            "(curl, scripts) with the bearer token.",
        )

    def check_token(self, method: str, path: str, headers: Headers) -> Refusal | None:
        if method in ("GET", "HEAD") and path in self.public:
            return None
        if tokens.matches(headers.get("authorization"), self.token()):
            return None
        users = " On this cluster a user's own token works too." if self.users else ""
        return Refusal(
            401,
            "This grid-ops server needs its bearer token.",
            "Send 'Authorization: Bearer TOKEN' ('grid-ops serve token' prints it), or "
            f"open the http://…/#token=… address 'grid-ops serve' printed.{users}",
        )


def check_body_headers(headers: Headers, limit: int) -> Refusal | None:
    """A body must be JSON, and its Content-Length at most ``limit``."""
    kind = headers.get("content-type")
    if (kind is not None or carries_body(headers)) and not is_json(kind or ""):
        return Refusal(
            415,
            f"A request body must be JSON; this one is {(kind or 'untyped')[:SHOWN]!r}.",
            "Send it with 'Content-Type: application/json'.",
        )
    length = headers.get("content-length", "0")
    if not length.isdigit():
        return Refusal(400, "The Content-Length header is not a number.", "Send a valid one.")
    return too_large(limit) if int(length) > limit else None


def is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def carries_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def too_large(limit: int) -> Refusal:
    return Refusal(
        413,
        f"The request body is over {limit // 1024} KiB.",
        "Job commands and environments are far smaller; ship large inputs as files "
        "('grid-ops job launch --workdir').",
    )


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body; None as soon as it is over ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` (already read) once, then what the client sends."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def with_headers(send: Send) -> Send:
    """``send`` adding the security headers to the answer's start."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in HEADERS.items():
                headers[name] = value
        await send(message)

    return sending
