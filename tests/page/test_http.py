"""The status page over HTTP, against the real daemon: what it serves, its headers, its JSON, the badges,
escaping, and who may see it (``server.ui``). The browser tests (test_browser.py) load it in Chromium."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.peers.web import Peers

TOKEN = "page-token-2718281828"
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


def call(
    daemon: Daemon, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def hostile(peers: Peers) -> str:
    """A health endpoint whose status word and component names and words carry script payloads."""
    return peers.script(
        "xss",
        {
            "status": XSS_SCRIPT,
            "details": {XSS_IMG: {"status": "down"}, "db": {"status": XSS_IMG}},
        },
    )


def config_text(peers: Peers, server: str = "") -> str:
    return (
        server + "defaults: {interval: 1s, timeout: 500ms}\n"
        "groups:\n  ready: [web, critical:true]\n"
        "targets:\n"
        f"  - {{name: web, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status, components: auto}}\n"
        f"  - {{name: evil, kind: http, critical: false, url: '{hostile(peers)}', body_status_field: status, "
        "components: terminus}\n"
        f"  - {{name: down, kind: tcp, critical: false, address: '{peers.address('closed')}'}}\n"
        f"  - {{name: cert, kind: tls, address: '{peers.address('tls-expiring')}', server_name: localhost, "
        f"ca_file: '{peers.certs.ca_file}'}}\n"
    )


@pytest.fixture(scope="module")
def daemon(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    path = tmp_path_factory.mktemp("page") / "prober.yaml"
    path.write_text(config_text(peers))
    running = Daemon(path)
    running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
    yield running
    running.stop()


def test_the_page_is_html_with_a_strict_content_security_policy(daemon: Daemon) -> None:
    status, headers, body = call(daemon, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    html = body.decode()
    assert "<script>" not in html and " style=" not in html  # no inline script or style for the CSP to allow
    assert not re.search(r"<[^>]*\son\w+=", html)  # no event handler attribute on any element
    # every asset comes from the daemon itself: no CDN, nothing from another origin
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a[0] in "/#" and not a.startswith("//") for a in assets), assets
    for asset in {a for a in assets if a.startswith("/static/")}:
        got, asset_headers, content = call(daemon, asset)
        assert got == 200 and content, asset
        assert "immutable" in asset_headers["cache-control"]


def test_every_target_has_a_row_with_its_state_in_words(daemon: Daemon) -> None:
    html = call(daemon, "/")[2].decode()
    states = dict(re.findall(r'data-name="([a-z0-9_.-]+)" data-state="(\w+)"', html))
    assert states == {"web": "ok", "evil": "unhealthy", "down": "unhealthy", "cert": "degraded"}
    rows = re.findall(r'<tr id="t-([^"]+)".*?</tr>', html, re.S)
    assert rows[:2] == ["down", "evil"] or rows[:2] == ["evil", "down"]  # unhealthy first
    assert '<span class="pill s-unhealthy">unhealthy</span>' in html  # the word; colour and icon: page.css
    assert "d left" in html  # the certificate's days


def test_text_from_peers_is_escaped(daemon: Daemon) -> None:
    html = call(daemon, "/")[2].decode()
    assert XSS_SCRIPT not in html and "<img" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    detail = call(daemon, "/target/evil")[2].decode()
    assert XSS_SCRIPT not in detail and "<img" not in detail and "&lt;img src=x onerror=" in detail


def test_status_carries_uptimes(daemon: Daemon) -> None:
    body = json.loads(call(daemon, "/status")[2])
    assert body["checks"]["web"]["uptime_1h"] == 1.0 and body["checks"]["web"]["uptime_24h"] == 1.0
    assert body["checks"]["down"]["uptime_1h"] == 0.0


def test_the_pages_json_and_a_targets_history(daemon: Daemon) -> None:
    status, headers, body = call(daemon, "/api/page")
    page = json.loads(body)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert page["overall"] == "degraded" and page["groups"] == {"ready": "degraded"}
    assert page["poll_seconds"] == 1.0
    down = page["rows"]["down"]
    assert (down["state"], down["reason"], down["uptime_1h"]) == ("unhealthy", "refused", 0.0)
    assert down["timeline"][-1] == "u"
    assert page["rows"]["web"]["components"] == [["database", "ok", "ok"]]
    assert "spark" not in page and len(json.loads(call(daemon, "/api/page?spark=1")[2])["spark"]["web"]) == 60
    history = json.loads(call(daemon, "/api/history/down")[2])
    assert history["transitions"][-1]["from"] == "unknown" and history["transitions"][-1]["to"] == "unhealthy"
    assert history["transitions"][-1]["reason"] == "refused"
    assert len(history["minutes"]["buckets"]) == 60 and len(history["quarters"]["buckets"]) == 96
    newest = history["minutes"]["buckets"][-1] or history["minutes"]["buckets"][-2]
    assert newest["down"] >= 1 and newest["status"] == "unhealthy"
    web = json.loads(call(daemon, "/api/history/web")[2])
    assert web["check"]["phases_ms"].keys() >= {"connect", "request"}
    assert web["check"]["observations"]["status_code"] == 200
    assert call(daemon, "/api/history/nobody")[0] == 404
    assert call(daemon, "/target/nobody")[0] == 404


def test_badges(daemon: Daemon) -> None:
    status, headers, body = call(daemon, "/badge/web.svg")
    svg = body.decode()
    assert status == 200 and headers["content-type"] == "image/svg+xml"
    assert 'aria-label="web: ok"' in svg and "#4c1" in svg
    assert headers["cache-control"] == "public, max-age=1, must-revalidate" and headers["etag"]
    assert call(daemon, "/badge/web.svg", headers={"If-None-Match": headers["etag"]})[0] == 304
    uptime = call(daemon, "/badge/down.svg?metric=uptime_24h")[2].decode()
    assert 'aria-label="down 24h: 0.00%"' in uptime and "#e05d44" in uptime
    assert 'aria-label="status: degraded"' in call(daemon, "/badge/overall.svg")[2].decode()
    assert 'aria-label="web: ok"' in call(daemon, "/badge/target/web.svg")[2].decode()
    assert call(daemon, "/badge/web.svg?metric=nonsense")[0] == 400
    assert call(daemon, "/badge/nobody.svg")[0] == 404


# --- who may see it ------------------------------------------------------------------------------------


def form(token: str, next_path: str = "/") -> str:
    from urllib.parse import urlencode

    return urlencode({"token": token, "next": next_path})


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def guarded(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("page-token")
    (directory / "token").write_text(TOKEN + "\n")
    path = directory / "prober.yaml"
    path.write_text(config_text(peers, "server:\n  bearer_token_file: token\n"))
    running = Daemon(path)
    running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
    yield running
    running.stop()


def test_with_a_token_strangers_see_nothing(guarded: Daemon) -> None:
    status, headers, _ = call(guarded, "/?state=ok")
    assert status == 303 and headers["location"] == "/login?next=%2F%3Fstate%3Dok"
    assert call(guarded, "/target/web")[0] == 303
    for path in ("/api/page", "/api/history/web", "/badge/web.svg", "/badge/overall.svg"):
        got, got_headers, body = call(guarded, path)
        assert got == 401, path
        assert json.loads(body) == {"error": "log in at /login or send Authorization: Bearer <token>"}
        assert got_headers["cache-control"] == "no-store"
    login = call(guarded, "/login")
    assert login[0] == 200 and b'type="password"' in login[2] and b'method="post"' in login[2]
    assert call(guarded, "/static/page.css")[0] == 200  # the login form needs its style


def test_the_bearer_header_opens_the_json_and_badges(guarded: Daemon) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(guarded, "/api/page", headers=bearer)[0] == 200
    status, headers, _ = call(guarded, "/badge/web.svg", headers=bearer)
    assert status == 200 and headers["cache-control"].startswith("private")
    assert call(guarded, "/api/page", headers={"Authorization": "Bearer wrong"})[0] == 401


def test_login_sets_a_strict_http_only_cookie_and_never_puts_the_token_in_a_url(guarded: Daemon) -> None:
    wrong = call(guarded, "/login", "POST", FORM, form("not-the-token"))
    assert wrong[0] == 200 and b"not the right one" in wrong[2] and "set-cookie" not in wrong[1]
    status, headers, _ = call(guarded, "/login", "POST", FORM, form(TOKEN, "/target/web"))
    assert status == 303 and headers["location"] == "/target/web"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie and TOKEN not in headers["location"]
    session = cookie.split(";")[0]
    assert call(guarded, "/api/page", headers={"Cookie": session})[0] == 200
    assert call(guarded, "/", headers={"Cookie": session})[0] == 200
    # a forged or expired session does not open it
    value = session.split("=", 1)[1]
    expiry, mac = value.split(".")
    assert call(guarded, "/api/page", headers={"Cookie": f"prober_session={int(expiry) + 1}.{mac}"})[0] == 401
    assert call(guarded, "/api/page", headers={"Cookie": f"prober_session={int(time.time()) - 5}.{mac}"})[0] == 401
    # a token in the query string is not a way in
    assert call(guarded, f"/?token={TOKEN}")[0] == 303
    assert call(guarded, f"/login?token={TOKEN}")[1].get("set-cookie") is None
    # another site cannot post the form; "next" never leaves the server
    assert call(guarded, "/login", "POST", {**FORM, "Origin": "http://evil.example"}, form(TOKEN))[0] == 403
    assert call(guarded, "/login", "POST", {**FORM, "Sec-Fetch-Site": "cross-site"}, form(TOKEN))[0] == 403
    away = call(guarded, "/login", "POST", FORM, form(TOKEN, "//evil.example/"))
    assert away[1]["location"] == "/"
    out = call(guarded, "/logout", "POST", {"Cookie": session})
    assert out[0] == 303 and 'prober_session=""' in out[1]["set-cookie"]


def test_status_keeps_its_own_bearer_rule(guarded: Daemon) -> None:
    status, _, _ = call(guarded, "/status")
    assert status == 401


def restart_with(daemon_dir: Path, peers: Peers, server: str) -> Daemon:
    (daemon_dir / "token").write_text(TOKEN + "\n")
    path = daemon_dir / "prober.yaml"
    path.write_text(config_text(peers, server))
    return Daemon(path)


def test_ui_off_serves_no_page(peers: Peers, tmp_path: Path) -> None:
    running = restart_with(tmp_path, peers, "server:\n  ui: 'off'\n")
    try:
        status, headers, body = call(running, "/")
        assert status == 200 and headers["content-type"].startswith("text/plain") and b"/status" in body
        for path in ("/api/page", "/api/history/web", "/badge/web.svg", "/target/web", "/static/page.js"):
            assert call(running, path)[0] == 404, path
    finally:
        running.stop()


def test_ui_public_with_a_token_opens_the_page_but_not_status(peers: Peers, tmp_path: Path) -> None:
    running = restart_with(tmp_path, peers, "server:\n  bearer_token_file: token\n  ui: public\n")
    try:
        running.wait_until(lambda: call(running, "/badge/web.svg")[0] == 200, what="an open badge")
        assert call(running, "/")[0] == 200 and call(running, "/api/page")[0] == 200
        assert call(running, "/status")[0] == 401
        assert call(running, "/login")[0] == 303  # nothing to log in to
    finally:
        running.stop()


def test_the_page_never_triggers_a_probe(daemon: Daemon) -> None:
    """Reading the page, its JSON and the badges many times does not add runs."""

    def runs() -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in daemon.metrics().splitlines()
            if line.startswith("prober_probes_total{")
        )

    before = runs()
    for _ in range(30):
        for path in ("/", "/api/page?spark=1", "/api/history/web", "/badge/web.svg", "/target/web"):
            call(daemon, path)
    elapsed_runs = runs() - before
    assert elapsed_runs <= 4 * 4  # 4 targets at 1 s; the requests above took well under 4 s
