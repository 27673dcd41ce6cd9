"""Who may see the page, its JSON and the badges (``server.ui``).

* ``public``: everybody who reaches the port (the default without ``server.bearer_token_file``);
* ``token``: the default with a bearer token: a request carries ``Authorization: Bearer <token>`` (scripts,
  badge proxies) or the session cookie a person gets by entering the token once in the login form;
* ``off``: no page, no page JSON, no badges (``/`` answers the list of endpoints in plain text).

The session cookie is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` too when the request came over
TLS) and holds no token: an expiry and an HMAC of it keyed by a hash of the token, so it lasts
``SESSION_SECONDS``, survives a restart, and dies when the token changes. The token is only ever sent in a
POST body or a header, never in a URL."""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web

from prober.models import ServerConfig

COOKIE = "prober_session"
SESSION_SECONDS = 12 * 3600


def mode(settings: ServerConfig) -> str:
    """The effective ``server.ui``."""
    if settings.ui is not None:
        return settings.ui
    return "token" if settings.bearer_token is not None else "public"


def _key(settings: ServerConfig) -> bytes:
    assert settings.bearer_token is not None
    return hashlib.sha256(b"prober-ui-session\0" + settings.bearer_token.get_secret_value().encode()).digest()


def session(settings: ServerConfig, now: float | None = None) -> str:
    """A new session cookie's value."""
    expiry = str(int((time.time() if now is None else now) + SESSION_SECONDS))
    return f"{expiry}.{hmac.new(_key(settings), expiry.encode(), hashlib.sha256).hexdigest()}"


def valid_session(settings: ServerConfig, value: str, now: float | None = None) -> bool:
    expiry, _, mac = value.partition(".")
    if not expiry.isdigit() or len(expiry) > 12 or settings.bearer_token is None:
        return False
    expected = hmac.new(_key(settings), expiry.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac.encode(), expected.encode()) and int(expiry) > (time.time() if now is None else now)


def valid_token(settings: ServerConfig, given: str) -> bool:
    if settings.bearer_token is None:
        return False
    return hmac.compare_digest(given.encode(), settings.bearer_token.get_secret_value().encode())


def allowed(request: web.Request, settings: ServerConfig) -> bool:
    """May this request see the page (the mode is not ``off``: the caller checks that)?"""
    if mode(settings) == "public":
        return True
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and valid_token(settings, header[len("Bearer ") :]):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and valid_session(settings, cookie)


def same_origin(request: web.Request) -> bool:
    """A form POST from a page of this server: the browser's ``Sec-Fetch-Site`` says so, or its ``Origin``
    names this host (behind a TLS proxy the scheme may differ); a client that sends neither (curl) passes."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or origin.partition("://")[2] == request.host


def safe_next(path: str) -> str:
    """Where to go after logging in: a path on this server only (no ``//host``, no scheme)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 512:
        return "/"
    return path


def set_cookie(response: web.StreamResponse, request: web.Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, value, max_age=max_age, path="/", httponly=True, samesite="Strict", secure=request.secure or None
    )
