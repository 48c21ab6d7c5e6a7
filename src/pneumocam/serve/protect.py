"""What the viewer refuses before a request reaches a route: foreign Host and Origin headers, oversized uploads;
and the headers every answer carries.

There is no authentication: the server is for one person on one machine. So it listens on loopback by default and
answers only requests addressed to the names it listens on (KnownHostsOnly: a page elsewhere that rebinds its DNS
name to 127.0.0.1 is still refused), and a browser request sent from another web page (a
foreign Origin, or Sec-Fetch-Site saying so) is refused before it costs anything. These are plain ASGI classes:
Starlette's BaseHTTPMiddleware would add its cost to every request.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from pneumocam.core.errors import SettingError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "[::]")

# The viewer's own pages: scripts and styles from /static only (no inline code), pictures from the API's data: URLs.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# A run's report.html comes from a run folder, which is treated as hostile: no script runs in it at all.
REPORT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; sandbox"
)
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def host_name(host: str) -> str:
    """The name a Host header carries for an interface: IPv6 literals in brackets, lower case."""
    host = host.strip().lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(host: str, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Loopback names, the interface served (unless it is a wildcard) and any names the user added. A pattern ('*',
    '*.example.org') is refused: it would turn the Host check, and with it the defence against DNS rebinding, off."""
    names = list(LOOPBACK_HOSTS)
    patterns = [name for name in extra if "*" in name]
    if patterns:
        raise SettingError(
            "allowed_host",
            f"names one host each, not a pattern ({patterns[0]!r}): list every name the server answers to",
        )
    for name in (host, *extra):
        name = host_name(name)
        if name and name not in WILDCARD_BINDS and name not in names:
            names.append(name)
    return names


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope, receive, send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


class _HTTPOnly:
    """An ASGI middleware that looks at HTTP requests only (handle) and passes anything else (lifespan) through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        raise NotImplementedError


def request_host(value: str) -> str:
    """The host name of a Host header, port dropped, IPv6 literals kept in brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class KnownHostsOnly(_HTTPOnly):
    """400, as JSON, for a request whose Host header names none of the server's names (DNS rebinding: a page whose
    name now points at 127.0.0.1 still sends its own name)."""

    def __init__(self, app, hosts: list[str]):
        super().__init__(app)
        self.hosts = {host_name(h) for h in hosts}

    async def handle(self, scope, receive, send):
        if request_host(_header(scope, b"host") or "") not in self.hosts:
            await _refuse(scope, receive, send, 400, "refused: the request is not addressed to this server's names")
            return
        await self.app(scope, receive, send)


class SameOriginOnly(_HTTPOnly):
    """403 for a request another web page sent: an Origin that is not this server's own (scheme, host and port of
    the Host header), or, for a request that changes or costs something (anything but GET/HEAD), a
    Sec-Fetch-Site other than same-origin/none. A cross-site multipart POST needs no CORS preflight, so this is
    what stops another tab from uploading films or spending the model."""

    SAFE = ("GET", "HEAD", "OPTIONS")

    async def handle(self, scope, receive, send):
        origin, host = _header(scope, b"origin"), _header(scope, b"host") or ""
        if origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            if parts is None or parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                await _refuse(scope, receive, send, 403, "refused: the request came from another web site")
                return
        site = _header(scope, b"sec-fetch-site")
        if scope["method"] not in self.SAFE and site not in (None, "same-origin", "none"):
            await _refuse(scope, receive, send, 403, "refused: the request came from another web site")
            return
        await self.app(scope, receive, send)


class SecurityHeaders(_HTTPOnly):
    """The usual protective headers on every answer; the content policy of a page or of a run's report."""

    async def handle(self, scope, receive, send):
        policy = REPORT_POLICY if scope["path"].startswith("/runs/") else PAGE_POLICY

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"content-security-policy"]
                message = {
                    **message,
                    "headers": [*headers, *COMMON_HEADERS, (b"content-security-policy", policy.encode())],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UploadLimit:
    """413 for an upload over the limit, counted as its bytes arrive: at once when Content-Length announces too
    much, and as soon as a chunked body passes the limit (nothing beyond it is read or spooled to disk)."""

    def __init__(self, app, limit: int, message: str, paths: tuple[str, ...] = ("/api/predict",)):
        # Multipart framing (boundaries, part headers, the method field) rides on top of the file itself.
        self.app, self.limit, self.message, self.paths = app, limit + 65536, message, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length") or ""
        if length.isdigit() and int(length) > self.limit:
            await _refuse(scope, receive, send, 413, self.message)
            return
        state = {"received": 0, "over": False, "started": False}

        async def counted_receive():
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True  # the app sees a client that went away; its answer is replaced below
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["over"]:
                return  # the 413 goes out instead (below)
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)


def protect(app, limit: int, limit_message: str, hosts: list[str]) -> None:
    """Add the refusals and headers to a FastAPI app. The last added runs first: the headers wrap every answer,
    the refusals' own included, then hosts, origin and the upload limit refuse in that order."""
    app.add_middleware(UploadLimit, limit=limit, message=limit_message)
    app.add_middleware(SameOriginOnly)
    app.add_middleware(KnownHostsOnly, hosts=hosts)
    app.add_middleware(SecurityHeaders)


__all__ = [
    "LOOPBACK_HOSTS", "allowed_hosts", "protect", "KnownHostsOnly", "SameOriginOnly", "SecurityHeaders", "UploadLimit",
]  # fmt: skip
