"""The status page in a real browser (Debian's Chromium, headless): it loads without console errors and
shows every target's state, follows a real Redis going down without a reload, filters, shows a target's
transitions, keeps hostile text inert, can be used with the keyboard alone, passes axe-core, and lets a
person log in with the token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.page.browser import axe_violations, chromium, console_errors
from tests.page.test_http import TOKEN, XSS_IMG, XSS_SCRIPT, hostile
from tests.peers.redis import Process, Servers
from tests.peers.web import Peers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:selenium")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    servers = Servers(tmp_path_factory.mktemp("page-redis"))
    try:
        yield servers.server()
    finally:
        servers.stop_all()


def write_config(directory: Path, peers: Peers, redis: Process, server: str = "") -> Path:
    path = directory / "prober.yaml"
    path.write_text(
        server + "defaults: {interval: 1s, timeout: 500ms}\n"
        "groups:\n  ready: [web, cache]\n  live: [web]\n"
        "targets:\n"
        f"  - {{name: web, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status, components: auto}}\n"
        f"  - {{name: reports, kind: http, critical: false, url: '{peers.url('/nest/degraded')}', "
        "body_status_field: status}\n"
        f"  - {{name: cache, kind: redis, url: '{redis.url()}'}}\n"
        f"  - {{name: evil, kind: http, critical: false, url: '{hostile(peers)}', body_status_field: status, "
        "components: terminus}\n"
        f"  - {{name: down, kind: tcp, critical: false, address: '{peers.address('closed')}'}}\n"
    )
    return path


@pytest.fixture(scope="module")
def daemon(peers: Peers, redis: Process, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(write_config(tmp_path_factory.mktemp("page-browser"), peers, redis))
    running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def rows(driver: Any) -> dict[str, str]:
    """Visible rows: target name -> the state word its pill shows."""
    found: dict[str, str] = driver.execute_script(
        "const out = {};"
        "document.querySelectorAll('#targets tbody tr').forEach(tr => {"
        "  if (!tr.hidden) out[tr.dataset.name] = tr.querySelector('.pill').textContent; });"
        "return out;"
    )
    return found


def pill_look(driver: Any, selector: str) -> tuple[str, str, str]:
    """(background colour, icon, word) of a state pill as the browser renders it."""
    found: list[str] = driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "const icon = getComputedStyle(e, '::before').content;"
        "return [getComputedStyle(e).backgroundColor, icon.split('/')[0].trim().replace(/\"/g, ''), e.textContent];",
        selector,
    )
    return found[0], found[1], found[2]


def order_of(driver: Any) -> list[str]:
    names: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#targets tbody tr')].map(r => r.dataset.name)"
    )
    return names


def test_the_page_loads_without_console_errors_and_shows_every_state(browser: Any, daemon: Daemon) -> None:
    browser.get(daemon.url + "/")
    assert rows(browser) == {
        "web": "ok",
        "reports": "degraded",
        "cache": "ok",
        "evil": "unhealthy",
        "down": "unhealthy",
    }
    order = order_of(browser)
    assert order == ["down", "evil", "reports", "cache", "web"]  # unhealthy first, then degraded, then ok
    # colour, icon and word
    assert pill_look(browser, "#t-down .pill") == ("rgb(254, 226, 226)", "✕", "unhealthy")
    assert pill_look(browser, "#t-web .pill") == ("rgb(220, 252, 231)", "✓", "ok")
    assert pill_look(browser, ".overall .pill") == ("rgb(254, 243, 199)", "!", "degraded")
    time.sleep(2.5)  # two updates from the JSON
    assert rows(browser)["down"] == "unhealthy"
    assert console_errors(browser) == []


def test_the_filters_work(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(daemon.url + "/")
    Select(browser.find_element("id", "f-state")).select_by_value("unhealthy")
    assert set(rows(browser)) == {"down", "evil"}
    assert browser.current_url.endswith("/?state=unhealthy")
    Select(browser.find_element("id", "f-kind")).select_by_value("tcp")
    assert set(rows(browser)) == {"down"}
    Select(browser.find_element("id", "f-state")).select_by_value("")
    Select(browser.find_element("id", "f-kind")).select_by_value("")
    Select(browser.find_element("id", "f-group")).select_by_value("ready")
    assert set(rows(browser)) == {"web", "cache"}
    assert (
        "1 of 5" not in browser.find_element("id", "shown").text
        and "2 of 5" in browser.find_element("id", "shown").text
    )
    Select(browser.find_element("id", "f-sort")).select_by_value("name")
    Select(browser.find_element("id", "f-group")).select_by_value("")
    order = order_of(browser)
    assert order == sorted(order)
    # a filtered address renders filtered, also before the script runs
    browser.get(daemon.url + "/?state=degraded")
    assert set(rows(browser)) == {"reports"}
    assert console_errors(browser) == []


def test_hostile_text_is_shown_and_never_runs(browser: Any, daemon: Daemon) -> None:
    for path in ("/", "/target/evil"):
        browser.get(daemon.url + path)
        for summary in browser.find_elements("css selector", "details.comps summary"):
            summary.click()
        time.sleep(2.5)  # the page has updated itself from the JSON meanwhile
        text = browser.find_element("tag name", "main").text
        assert XSS_SCRIPT in text, path  # shown as text, from the message
        assert XSS_IMG in text, path  # a component's word
        assert browser.execute_script("return window.__xss === undefined"), path
        injected = "return document.querySelectorAll('img, script:not([src^=\"/static/page.js\"])').length"
        assert browser.execute_script(injected) == 0, path
        assert console_errors(browser) == [], path  # not even a blocked inline script


def test_keyboard_reaches_every_control(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.get(daemon.url + "/")
    controls = browser.execute_script(
        "return [...document.querySelectorAll('a[href], button, select, summary, input')]"
        ".filter(e => !e.closest('[hidden]')).map(e => e.outerHTML.slice(0, 80));"
    )
    reached: list[str] = []
    for _ in range(len(controls) + 3):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        reached.append(browser.execute_script("return document.activeElement.outerHTML.slice(0, 80)"))
    assert set(controls) <= set(reached), set(controls) - set(reached)
    # and they work from the keyboard: Enter opens a target's components, the skip link jumps to the table
    browser.execute_script("document.querySelector('#t-web details summary').focus()")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.execute_script("return document.querySelector('#t-web details').open")
    browser.execute_script("document.querySelector('#f-state').focus()")
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    assert browser.execute_script("return document.querySelector('#f-state').value") == "unhealthy"
    assert set(rows(browser)) == {"down", "evil"}


def test_axe_finds_no_serious_violation(browser: Any, daemon: Daemon) -> None:
    for path in ("/", "/target/cache", "/?state=unhealthy"):
        browser.get(daemon.url + path)
        assert axe_violations(browser) == [], path
    with chromium(390, 844) as phone:
        phone.get(daemon.url + "/")
        assert axe_violations(phone) == []


def test_updates_pause_while_the_tab_is_hidden(browser: Any, daemon: Daemon) -> None:
    """A hidden tab asks nothing of the daemon; showing it again updates at once."""
    browser.get(daemon.url + "/")
    polls = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/page')).length"
    wait_for(lambda: browser.execute_script(polls) >= 1, 5, "the first update")
    browser.execute_script(
        "window.__hidden = true;"
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => window.__hidden});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    before = browser.execute_script(polls)
    time.sleep(3.5)  # more than three intervals of 1 s
    assert browser.execute_script(polls) == before
    browser.execute_script("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'));")
    wait_for(lambda: browser.execute_script(polls) > before, 1.0, "an update as soon as the tab shows")
    assert console_errors(browser) == []


def test_a_stopped_redis_turns_its_row_unhealthy_without_a_reload(browser: Any, daemon: Daemon, redis: Process) -> None:
    """Last in this module: it stops the shared Redis."""
    browser.get(daemon.url + "/")
    browser.execute_script("window.__still_this_page = true")
    assert rows(browser)["cache"] == "ok"
    redis.stop()
    stopped = time.monotonic()
    # an interval (1 s) for the run to fail, one poll (1 s) for the page to see it, and some slack
    wait_for(lambda: rows(browser).get("cache") == "unhealthy", 5.0, "the cache row to turn unhealthy")
    print(f"cache row unhealthy {time.monotonic() - stopped:.1f} s after redis stopped")
    assert browser.execute_script("return window.__still_this_page === true")  # updated in place
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    row = browser.find_element("id", "t-cache")
    assert "refused" in row.text or "timeout" in row.text
    order = order_of(browser)
    assert order.index("cache") < order.index("reports")  # unhealthy rows move up
    # the detail view shows the transition
    browser.get(daemon.url + "/target/cache")
    transitions = browser.find_element("id", "d-transitions").text
    assert "ok → unhealthy" in transitions and "unknown → ok" in transitions
    assert pill_look(browser, "#d-state .pill")[1:] == ("✕", "unhealthy")
    assert console_errors(browser) == []


def test_a_person_logs_in_with_the_token(peers: Peers, redis: Process, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    running = Daemon(write_config(tmp_path, peers, redis, "server:\n  bearer_token_file: token\n"))
    try:
        with chromium() as driver:
            driver.get(running.url + "/target/web")
            assert driver.current_url.startswith(running.url + "/login?next=")
            assert axe_violations(driver) == []
            field = driver.find_element("id", "token")
            field.send_keys("wrong")
            field.submit()
            wait_for(lambda: driver.find_elements("css selector", ".error"), 5, "the login form's answer")
            assert "not the right one" in driver.find_element("css selector", ".error").text
            field = driver.find_element("id", "token")
            field.send_keys(TOKEN)
            field.submit()
            wait_for(lambda: driver.current_url == running.url + "/target/web", 5, "the detail view")
            assert TOKEN not in driver.current_url
            assert driver.execute_script("return document.cookie") == ""  # HttpOnly: no script can read it
            driver.get(running.url + "/")
            time.sleep(2.5)  # the page's JSON answers with the cookie
            assert rows(driver)["web"] == "ok"
            assert console_errors(driver) == []
            driver.find_element("css selector", ".logout button").click()
            driver.get(running.url + "/")
            assert "/login" in driver.current_url
    finally:
        running.stop()


def test_with_many_targets_the_script_adds_the_rows_the_first_render_left_out(peers: Peers, tmp_path: Path) -> None:
    """The HTML carries the first 250 rows (unhealthy first); page.js builds the others from the JSON, each
    like a server-rendered row, and the filters apply to them."""
    lines = ["defaults: {interval: 5s, timeout: 1s}", "targets:"]
    lines.append(f"  - {{name: web, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}")
    lines += [
        f"  - {{name: t{i:03d}, kind: tcp, critical: false, address: '{peers.address('closed')}'}}" for i in range(300)
    ]
    (tmp_path / "prober.yaml").write_text("\n".join(lines) + "\n")
    running = Daemon(tmp_path / "prober.yaml")
    try:
        running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
        html = running.get("/")[1].decode()
        assert html.count("<tr id=") == 250 and "51 more targets" in html
        assert running.get("/?all=1")[1].decode().count("<tr id=") == 301
        with chromium() as driver:
            driver.get(running.url + "/")
            wait_for(lambda: len(rows(driver)) == 301, 5, "every row")
            shown = rows(driver)
            assert shown["web"] == "ok" and {shown[f"t{i:03d}"] for i in range(300)} == {"unhealthy"}
            assert order_of(driver)[-1] == "web"  # the ok row, built by the script, sorted last
            shape = (
                "return [...arguments[0].querySelectorAll('*')].map(e => e.tagName.toLowerCase() + '.' +"
                " (e.getAttribute('class') || '')).join(' ')"
            )
            served = driver.execute_script(shape, driver.find_element("id", "t-t000"))
            built = driver.execute_script(shape, driver.find_element("id", "t-t299"))
            assert served == built  # the same cells, classes and shapes
            assert driver.find_elements("id", "more") == []
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element("id", "f-state")).select_by_value("ok")
            assert set(rows(driver)) == {"web"}
            assert console_errors(driver) == []
    finally:
        running.stop()
