"""The web app's gate: a Jupyter-like token, an HttpOnly cookie, and a Host header check.

Every request passes through ``Gate`` (a plain ASGI middleware, so it costs microseconds):

1. The ``Host`` header must name the bound host, ``localhost`` or ``127.0.0.1`` with our port;
   anything else is refused with 400 (a DNS-rebinding page cannot reach the app under its own name).
2. A request carrying ``?token=...`` with the right token gets the token as an ``HttpOnly;
   SameSite=Strict`` cookie and a redirect to the same URL without the token (so it does not stay
   in the address bar or the history). A request with the cookie (or an ``Authorization: token ...``
   header, for scripts) goes through. Anything else is refused with 403.

3. Requests that compute or change something (``/map/``, ``/view/``, every POST) must come from
   our own pages: a ``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an ``Origin`` that is
   not ours, is refused with 403. The cookie alone is not enough there: ``SameSite`` treats other
   ports of localhost as the same site, so any local page could make a browser ask for maps.
4. Redirects keep to this server: backslashes become slashes (browsers read ``/\\host`` as
   ``//host``), leading slashes collapse to one, and anything unusual is percent-encoded.

There is no CORS middleware at all: browsers refuse other origins' reads by default. Responses
carry a Content-Security-Policy (scripts only from /static), ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.

Example:
    >>> app = Gate(inner_app, token=new_token(), host="127.0.0.1", port=8765)     # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl, quote, urlencode

COOKIE = "mikata_token"  # + "_PORT": cookies ignore ports, so two servers on one host must not share one
# every page: no framing (the review buttons cannot be clickjacked), scripts and images only from here;
# 'unsafe-eval' because plotly's WebGL scatter (regl) compiles its shaders' glue code at run time
HARDENING = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self' 'unsafe-eval'; "
                                 b"style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                                 b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


COMPUTING_PREFIXES = ("/map/", "/view/")  # GET routes that load the model or compute maps
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # kept as they are in a redirect's path; everything else is percent-encoded


def safe_location(raw_path: str) -> str:
    """A same-server redirect target for a request path: never ``//host`` or ``/\\host`` (off-site)."""
    path = quote(raw_path.replace("\\", "/"), safe=_PATH_SAFE)
    return "/" + path.lstrip("/")


def cross_site(method: str, path: str, headers: dict[str, str], origins: set[str]) -> bool:
    """Whether a computing or state-changing request came from a page that is not ours.

    Browsers send ``Sec-Fetch-Site``; older ones at least ``Origin`` on POSTs. Scripts (curl,
    Python) send neither and authenticate with the token header, so they pass.
    """
    if method == "GET" and not path.startswith(COMPUTING_PREFIXES):
        return False
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    return origin is not None and origin.lower() not in origins


def new_token() -> str:
    """A random URL-safe token (192 bits), like Jupyter's."""
    return secrets.token_hex(24)


def allowed_hosts(host: str, port: int | None) -> set[str]:
    """The Host header values the app accepts: the bound host, localhost and 127.0.0.1 with our port.

    Bound to every interface (``0.0.0.0`` / ``::``), the machine's own host names and addresses
    are accepted too, since that is how other machines will reach it; never an arbitrary name.
    """
    names = {host.lower(), "localhost", "127.0.0.1"}
    if host in ("0.0.0.0", "::"):
        names |= {"[::1]"} | machine_names()
    names |= {f"[{n}]" for n in list(names) if ":" in n and not n.startswith("[")}  # IPv6 literals, bracketed
    if port is None:
        return names
    return {f"{n}:{port}" for n in names}


def machine_names() -> set[str]:
    """This machine's host names and IP addresses (lower case), as far as the resolver knows them."""
    import socket

    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            hostname, aliases, addresses = socket.gethostbyname_ex(name)
        except OSError:
            continue
        names |= {hostname.lower(), *(a.lower() for a in aliases), *addresses}
    return {n for n in names if n}


class Gate:
    """ASGI middleware: Host check, then token (query → cookie + redirect, or cookie, or header)."""

    def __init__(self, app, token: str, host: str = "127.0.0.1", port: int | None = None,
                 extra_hosts: set[str] | None = None):
        self.app = app
        self.token = token
        self.hosts = allowed_hosts(host, port) | set(extra_hosts or ())
        self.cookie = f"{COOKIE}_{port}" if port is not None else COOKIE
        self.origins = {f"{scheme}://{h}" for h in self.hosts for scheme in ("http", "https")}

    def _host_ok(self, host: str) -> bool:
        return host.lower() in self.hosts

    def _good(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # the app has no websockets
            return await send({"type": "websocket.close", "code": 1008})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not self._host_ok(headers.get("host", "")):
            return await _plain(send, 400, "bad Host header: open the URL that `mikata serve` printed")
        query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)]
        given = next((v for k, v in query if k == "token"), None)
        if given is not None:
            if not self._good(given):
                return await _plain(send, 403, "wrong token: open the URL that `mikata serve` printed")
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            raw = scope.get("raw_path") or quote(scope["path"]).encode()
            location = safe_location(raw.decode("latin-1")) + (f"?{rest}" if rest else "")
            cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return await _send(send, 303, b"", [(b"location", location.encode("latin-1")),
                                                (b"set-cookie", cookie.encode("latin-1"))])
        given_cookie = cookie_value(headers.get("cookie", ""), self.cookie)
        auth = headers.get("authorization", "")
        if self._good(given_cookie) or (
                auth.lower().startswith("token ") and self._good(auth[6:].strip())):
            if cross_site(scope.get("method", "GET"), scope["path"], headers, self.origins):
                return await _plain(send, 403, "refused: maps and reviews only from mikata's own pages "
                                               "(this request came from another site or port)")
            async def send_hardened(message):
                if message["type"] == "http.response.start":
                    message = dict(message, headers=list(message.get("headers", [])) + HARDENING)
                await send(message)

            return await self.app(scope, receive, send_hardened)
        return await _plain(send, 403, "forbidden: open the URL with ?token=... that `mikata serve` printed")


def cookie_value(header: str, name: str) -> str | None:
    """One cookie's value from a Cookie header. Parsed by hand: ``http.cookies`` stops at the first
    cookie it finds malformed, and other apps on localhost (Jupyter, ...) set all kinds of cookies."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


async def _plain(send, status: int, text: str) -> None:
    await _send(send, status, text.encode(), [(b"content-type", b"text/plain; charset=utf-8")])


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = headers + [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
                         (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
