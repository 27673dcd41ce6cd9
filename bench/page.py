"""What the status page and its history cost, written to bench/PAGE.md:

    .venv/bin/python -m bench.page [--quick]

1. History memory: RSS of a process holding a board of 10,000 targets, without and with their history
   (typical: a few transitions; worst: every bucket written and 50 transitions with distinct 160-character
   messages per target), each in a fresh process.
2. Rendering cost, in process, for 2,000 targets: the page's JSON (each update), with sparklines (once a
   minute), the HTML of the first load.
3. The real daemon with 2,000 targets (1,800 tcp and 200 http on nginx, interval 5 s, so the page polls
   every 5 s) and Debian's Chromium: the time until the page is usable (its script's ``prober:ready``
   mark), the daemon's CPU with no page and with one open page, and prober_scheduler_lag_seconds with no
   page and with ten open pages.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.servers import ROOT, Nginx, Prober, Stack, http_get, parse_metrics, rss_mb

TARGETS_MEMORY = 10_000
TARGETS_PAGE = 2_000
OUT = ROOT / "bench" / "PAGE.md"


# --- 1. memory ----------------------------------------------------------------------------------------


def _memory_child(mode: str) -> None:
    """Runs in a fresh process: a board of 10,000 targets, with or without their history; prints RSS MB."""
    from dataclasses import dataclass

    from prober.history import History
    from prober.status import Board, Reason, Result, State

    @dataclass(frozen=True)
    class Target:
        name: str
        kind: str = "http"
        critical: bool = True
        interval: float = 15.0

    targets = [Target(f"target-{i:05d}.example") for i in range(TARGETS_MEMORY)]
    board = Board()
    board.apply(targets)
    now = time.time()
    for status in board.targets.values():  # every target has a last result, as in the daemon
        status.record(Result(State.OK, None, "HTTP 200, status=ok", latency=0.012), 1, 1, now)
    history = History() if mode != "none" else None
    if history is not None:
        history.apply(targets)
        start = now - 86400
        ok = Result(State.OK, None, "HTTP 200", latency=0.01)
        for target in targets:
            for step in range(96):  # one run in every quarter-hour of the day
                history.record(target.name, ok, State.OK, State.OK, start + step * 900)
            for step in range(60):  # and every minute of the last hour
                history.record(target.name, ok, State.OK, State.OK, now - 3600 + step * 60)
            changes = 50 if mode == "worst" else 3
            before = State.OK
            for k in range(changes):
                after = State.UNHEALTHY if k % 2 == 0 else State.OK
                if mode == "worst":  # distinct messages, as long as kept
                    message = f"{target.name} {k:03d} connect: connection refused by the peer " + "x" * 160
                else:
                    message = "connect: connection refused" if after is State.UNHEALTHY else "HTTP 200"
                result = Result(after, Reason.REFUSED if after is State.UNHEALTHY else None, message, latency=0.01)
                history.record(target.name, result, after, before, now - 60 + k)
                before = after
    gc.collect()
    print(json.dumps({"mode": mode, "rss_mb": rss_mb(os.getpid()), "kept": len(history or ())}))


def memory() -> dict[str, float]:
    found = {}
    for mode in ("none", "typical", "worst"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.page", "--memory-child", mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        found[mode] = json.loads(done.stdout)["rss_mb"]
    return found


# --- 2. rendering, in process --------------------------------------------------------------------------


def rendering() -> dict[str, float]:
    from dataclasses import dataclass

    from prober.history import History
    from prober.models import ServerConfig
    from prober.page import Page, view
    from prober.status import Board, Component, Reason, Result, State

    @dataclass(frozen=True)
    class Target:
        name: str
        kind: str
        critical: bool = True
        interval: float = 5.0

    targets = [Target(f"svc-{i:04d}", "http" if i % 10 == 0 else "tcp") for i in range(TARGETS_PAGE)]
    board, history = Board(), History()
    board.apply(targets)
    history.apply(targets)
    now = time.time()
    for i, target in enumerate(targets):
        for step in range(60):
            failing = i % 50 == 0 and step > 50
            result = (
                Result(State.UNHEALTHY, Reason.REFUSED, "connect: connection refused", latency=0.001)
                if failing
                else Result(State.OK, None, "HTTP 200", latency=0.002 + (step % 7) / 1000)
            )
            if target.kind == "http":
                result.components = {"db": Component(State.OK, "up"), "cache": Component(State.OK, "up")}
            status = board.targets[target.name]
            before = status.state
            when = now - 3540 + step * 60  # the last run in the current minute, as in a running daemon
            status.record(result, 1, 1, when)
            history.record(target.name, result, status.state, before, when)
    page = Page(board, history, lambda: ServerConfig())

    def timed(task: Callable[[], Any], repeat: int = 7) -> float:
        times = []
        for _ in range(repeat):
            started = time.process_time()
            task()
            times.append(time.process_time() - started)
        return statistics.median(times) * 1000

    class Query(dict[str, str]):
        pass

    def html() -> str:
        return page._index_html(view.Filters.parse(Query())).decode()

    def first_html() -> str:
        return page._index_html(view.Filters.parse(Query()), page.first_rows).decode()

    return {
        "json_ms": timed(lambda: page._render()),
        "json_bytes": len(page._render()),
        "spark_ms": timed(lambda: page._render(spark=True)),
        "spark_bytes": len(page._render(spark=True)),
        "html_ms": timed(first_html, 5),
        "html_bytes": len(first_html().encode()),
        "html_all_ms": timed(html, 3),
        "html_all_bytes": len(html().encode()),
        "status_ms_with_uptime": timed(lambda: _status(board, history)),
        "status_ms_without": timed(lambda: _status(board, None)),
    }


def _status(board: Any, history: Any) -> bytes:
    from prober.server import status_json

    return json.dumps(status_json(board, history=history)).encode()


# --- 3. the real daemon and Chromium --------------------------------------------------------------------


def lag(prober: Prober) -> tuple[float, float, dict[float, float]]:
    """(runs, sum of lag seconds, bucket counts) of prober_scheduler_lag_seconds so far, from one scrape."""
    text, _ = prober.metrics()
    names = {"prober_scheduler_lag_seconds_count", "prober_scheduler_lag_seconds_sum"}
    found = parse_metrics(text, names | {"prober_scheduler_lag_seconds_bucket"})
    counts = {float(labels["le"]): value for labels, value in found["prober_scheduler_lag_seconds_bucket"]}
    return found["prober_scheduler_lag_seconds_count"][0][1], found["prober_scheduler_lag_seconds_sum"][0][1], counts


def emulate_pages(base: str, count: int, seconds: float, poll: float) -> threading.Thread:
    """``count`` pages as page.js polls: one load of ``/``, then ``/api/page`` at the instants of the daemon's
    clock that are multiples of ``poll`` (plus up to 150 ms), with ``?spark=1`` once a minute: the daemon's
    side of open pages, without a browser's CPU on the same machine."""
    import random
    import urllib.request

    def page(index: int, stop: float) -> None:
        http_get(base + "/")
        minute = -1
        while True:
            now = time.time()
            wake = now + (poll - now % poll) + random.random() * 0.15
            if wake > stop:
                return
            time.sleep(wake - now)
            spark = int(time.time() // 60) != minute
            minute = int(time.time() // 60)
            with urllib.request.urlopen(base + "/api/page" + ("?spark=1" if spark else ""), timeout=30) as answer:
                answer.read()

    stop = time.time() + seconds
    threads = [threading.Thread(target=page, args=(i, stop), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    runner = threading.Thread(target=lambda: [t.join() for t in threads], daemon=True)
    runner.start()
    return runner


def window(prober: Prober, seconds: float) -> dict[str, float]:
    """The daemon's CPU share and its scheduling lag over the next ``seconds``."""
    load0 = os.getloadavg()[0]
    cpu0, (runs0, sum0, b0) = prober.proc.cpu(), lag(prober)
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu1, (runs1, sum1, b1) = prober.proc.cpu(), lag(prober)
    runs = runs1 - runs0
    within = {le: (b1[le] - b0[le]) / runs if runs else 0.0 for le in b1}
    return {
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "runs": runs,
        "lag_mean_ms": (sum1 - sum0) / runs * 1000 if runs else 0.0,
        "within_10ms": within.get(0.01, 0.0),
        "within_50ms": within.get(0.05, 0.0),
        "within_250ms": within.get(0.25, 0.0),
        "load": (load0 + os.getloadavg()[0]) / 2,
    }


def browser_runs(quick: bool) -> dict[str, Any]:
    from tests.page.browser import chromium

    stack = Stack()
    try:
        nginx = Nginx(stack)
        targets: list[dict[str, Any]] = []
        for i in range(TARGETS_PAGE):
            if i % 10 == 0:
                targets.append({"name": f"web-{i:04d}", "kind": "http", "url": nginx.url(i), "interval": "5s",
                                "timeout": "2s", "body_status_field": "status"})  # fmt: skip
            elif i % 97 == 0:
                targets.append({"name": f"gone-{i:04d}", "kind": "tcp", "address": "127.0.0.1:9", "interval": "5s",
                                "timeout": "2s", "critical": False})  # fmt: skip
            else:
                targets.append({"name": f"tcp-{i:04d}", "kind": "tcp", "address": f"127.0.0.1:{nginx.port}",
                                "interval": "5s", "timeout": "2s"})  # fmt: skip
        prober = Prober(stack, targets, "prober-page")
        prober.wait_listening()
        prober.wait_ready()
        time.sleep(10)  # past the first, spread round
        seconds = 30.0 if quick else 90.0
        results: dict[str, Any] = {"window_s": seconds}
        with chromium() as driver:
            loads = []
            for _ in range(3 if quick else 7):
                driver.get(prober.base + "/")
                complete = "return performance.getEntriesByName('prober:complete').length"
                deadline = time.monotonic() + 20
                while not driver.execute_script(complete) and time.monotonic() < deadline:
                    time.sleep(0.05)
                timing = driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "const r = performance.getEntriesByName('prober:ready')[0];"
                    "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                    "const c = performance.getEntriesByName('prober:complete')[0];"
                    "return {response: n.responseEnd, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd,"
                    " ready: r ? r.startTime : -1, paint: p ? p.startTime : -1, complete: c ? c.startTime : -1,"
                    " bytes: n.transferSize,"
                    " rows: document.querySelectorAll('#targets tbody tr').length};"
                )
                loads.append(timing)
            results["loads"] = loads
            driver.get("about:blank")
            results["idle"] = window(prober, seconds)
            driver.get(prober.base + "/")
            results["one_page"] = window(prober, seconds)
            driver.get("about:blank")
            results["idle_again"] = window(prober, seconds)
            handles = [driver.current_window_handle]
            driver.get(prober.base + "/")
            for _ in range(9):
                driver.switch_to.new_window("window")
                driver.get(prober.base + "/")
                handles.append(driver.current_window_handle)
            hidden = []
            for handle in handles:
                driver.switch_to.window(handle)
                hidden.append(driver.execute_script("return document.hidden"))
            results["ten_pages_hidden"] = hidden
            results["ten_pages"] = window(prober, seconds)
        pages = emulate_pages(prober.base, 10, seconds + 2, 5.0)
        time.sleep(2)  # their first loads
        results["ten_emulated"] = window(prober, seconds)
        pages.join(30)
        results["idle_last"] = window(prober, seconds)
        results["rss_mb"] = prober.proc.rss()
        status, body = http_get(prober.base + "/api/page")
        results["json_bytes_live"] = len(body) if status == 200 else None
        return results
    finally:
        stack.close()


# --- the report ------------------------------------------------------------------------------------------


def report(mem: dict[str, float], render: dict[str, float], live: dict[str, Any], command: str) -> str:
    from prober.history import MESSAGE_BUDGET, History

    per = History.bytes_per_target()
    readies = [load["ready"] for load in live["loads"] if load["ready"] >= 0]
    completes = [load["complete"] for load in live["loads"] if load["complete"] >= 0]
    paints = [load["paint"] for load in live["loads"] if load["paint"] >= 0]
    doms = [load["dom"] for load in live["loads"]]
    idle = (live["idle"]["cpu_share"] + live["idle_again"]["cpu_share"]) / 2
    one = live["one_page"]["cpu_share"]
    poll_cost = (render["json_ms"] * 11 + render["spark_ms"]) / 12 / 5.0 / 10  # % of a core at one poll per 5 s
    lines = [
        "# The status page: measured",
        "",
        f"Command: `{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average at the start {' '.join(f'{x:.2f}' for x in os.getloadavg())}. Shared and noisy: "
        "differences of a few tenths of a percent of a core are within noise.",
        "",
        "## Goals",
        "",
        "| goal | met | measured |",
        "|---|---|---|",
        "| history for 10,000 targets adds at most 64 MB RSS | "
        f"{'met' if mem['worst'] - mem['none'] <= 64 else 'not met'} "
        f"| worst case +{mem['worst'] - mem['none']:.1f} MB, typical +{mem['typical'] - mem['none']:.1f} MB |",
        f"| with 2,000 targets the page is usable in under 1 s | "
        f"{'met' if statistics.median(readies) < 1000 else 'not met'} (median) "
        f"| script ready after {statistics.median(readies):.0f} ms median, {max(readies):.0f} ms slowest of "
        f"{len(readies)} loads (the first, cold); first paint {statistics.median(paints):.0f} ms median; all "
        f"2,000 rows in the table after {statistics.median(completes):.0f} ms median, {max(completes):.0f} ms "
        "slowest |",
        f"| one open page costs the daemon under 2 % of a core at 2,000 targets | "
        f"{'met' if (one - idle) * 100 < 2 else 'not met'} | {100 * (one - idle):+.2f} % of a core measured "
        f"({100 * one:.2f} % with the page vs {100 * idle:.2f} % without); {poll_cost:.2f} % from the render "
        "cost below |",
        f"| ten open pages do not change prober_scheduler_lag_seconds | see below | mean start lag "
        f"{live['idle']['lag_mean_ms']:.2f} / {live['idle_last']['lag_mean_ms']:.2f} ms without a page, "
        f"{live['ten_emulated']['lag_mean_ms']:.2f} ms with ten emulated pages, "
        f"{live['ten_pages']['lag_mean_ms']:.2f} ms with ten Chromium windows on the same CPUs; runs started "
        f"within 10 ms: {100 * live['idle']['within_10ms']:.2f} %, {100 * live['ten_emulated']['within_10ms']:.2f} %, "
        f"{100 * live['ten_pages']['within_10ms']:.2f} % |",
        "",
        "## 1. History memory (10,000 targets, each in a fresh process)",
        "",
        f"Layout: {per} bytes of arrays per target (60 one-minute and 96 quarter-hour buckets, 50 transitions), "
        f"plus at most {MESSAGE_BUDGET} bytes of distinct kept messages.",
        "",
        "| process | RSS MB | history adds |",
        "|---|---|---|",
        f"| board only (every target with a last result) | {mem['none']:.1f} | |",
        f"| with history, typical (every bucket written, 3 transitions with common messages) | {mem['typical']:.1f} "
        f"| {mem['typical'] - mem['none']:.1f} MB ({(mem['typical'] - mem['none']) * 2**20 / TARGETS_MEMORY:.0f} "
        "B per target) |",
        f"| with history, worst (50 transitions with distinct long messages each) | {mem['worst']:.1f} "
        f"| {mem['worst'] - mem['none']:.1f} MB ({(mem['worst'] - mem['none']) * 2**20 / TARGETS_MEMORY:.0f} "
        "B per target) |",
        "",
        f"## 2. Rendering, in process ({TARGETS_PAGE} targets, CPU time, median)",
        "",
        "| what | when | CPU ms | bytes |",
        "|---|---|---|---|",
        f"| the page's JSON (`/api/page`) | each update | {render['json_ms']:.1f} | {render['json_bytes']:,} |",
        f"| with sparklines (`?spark=1`) | once a minute | {render['spark_ms']:.1f} | {render['spark_bytes']:,} |",
        f"| the HTML of `/` (the first 250 rows) | each load | {render['html_ms']:.1f} | {render['html_bytes']:,} |",
        f"| the HTML of `/?all=1` (every row) | without the script | {render['html_all_ms']:.1f} "
        f"| {render['html_all_bytes']:,} |",
        f"| `/status` with uptimes | | {render['status_ms_with_uptime']:.1f} | |",
        f"| `/status` without uptimes (as before) | | {render['status_ms_without']:.1f} | |",
        "",
        "One rendering of the page's JSON is shared by every page that asks within a second, and pages poll at "
        "the same instants of the daemon's clock.",
        "",
        f"## 3. The daemon with {TARGETS_PAGE} targets and Chromium (interval 5 s: the page polls every 5 s)",
        "",
        f"Targets: 1,800 tcp and 200 http on nginx, about 20 refused; {live['window_s']:.0f} s windows; daemon RSS "
        f"at the end {live['rss_mb']:.0f} MB; the page's JSON {live['json_bytes_live']:,} bytes.",
        "",
        "Page loads (ms from navigation start; the HTML carries the first 250 rows, unhealthy first; `ready`: the "
        "page script's mark, those rows arranged and every control live; `complete`: the script has added the "
        "other rows from the page's JSON; -1: the browser recorded no such entry):",
        "",
        "| load | response end | first contentful paint | DOMContentLoaded | ready | complete | load event | rows |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {i + 1} | {load['response']:.0f} | {load['paint']:.0f} | {load['dom']:.0f} | "
            f"{load['ready']:.0f} | {load['complete']:.0f} | {load['load']:.0f} | {load['rows']} |"
            for i, load in enumerate(live["loads"])
        ),
        "",
        f"Median DOMContentLoaded {statistics.median(doms):.0f} ms.",
        "",
        "| window | daemon CPU (% of a core) | runs | mean start lag ms | within 10 ms | within 50 ms "
        "| within 250 ms | machine load |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {100 * w['cpu_share']:.2f} | {w['runs']:.0f} | {w['lag_mean_ms']:.2f} | "
            f"{100 * w['within_10ms']:.2f} % | {100 * w['within_50ms']:.2f} % | {100 * w['within_250ms']:.2f} % "
            f"| {w['load']:.1f} |"
            for name, w in (
                ("no page", live["idle"]),
                ("one open page (Chromium)", live["one_page"]),
                ("no page, again", live["idle_again"]),
                ("ten open pages (ten Chromium windows on the same 2 CPUs)", live["ten_pages"]),
                ("ten emulated pages (page.js's requests, no browser)", live["ten_emulated"]),
                ("no page, last", live["idle_last"]),
            )
        ),
        "",
        f"The ten open pages were ten visible windows of one Chromium (document.hidden: "
        f"{live['ten_pages_hidden']}), each polling on its own; Chromium ran on the same 2 CPUs as the daemon, so "
        "that window also measures the browsers' own CPU taken from the daemon. The ten emulated pages make the "
        "requests page.js makes, at the same instants, from threads of the benchmark: the daemon's side alone. "
        "Machine load is the 1-minute load average during the window (other work shares this machine).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer loads")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    sys.path.insert(0, str(ROOT))
    mem = memory()
    print("memory", mem, flush=True)
    render = rendering()
    print("render", render, flush=True)
    live = browser_runs(args.quick)
    print("live", json.dumps(live, default=str), flush=True)
    command = ".venv/bin/python -m bench.page" + (" --quick" if args.quick else "")
    OUT.write_text(report(mem, render, live, command))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
