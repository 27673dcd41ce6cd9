"""The prober side by side with blackbox_exporter: CPU per probe, scale, accuracy, footprint, dependency probes.

    .venv/bin/python -m bench.run            # full: about 10 minutes on 2 cores
    .venv/bin/python -m bench.run --quick    # about 4 minutes: smaller windows, one scale step (10,000)

Prints a table and writes bench/RESULTS.md. Every server runs on loopback and is stopped at the end.
Needs (Debian): nginx, prometheus, prometheus-blackbox-exporter, postgresql, redis-server; root for the
tun device of the TCP delay peer (bench/peers.py). See bench/RESULTS.md for how each number is taken.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import (
    OPENMETRICS_ACCEPT,
    ROOT,
    Blackbox,
    Nginx,
    Postgres,
    Prober,
    Prometheus,
    Redis,
    Stack,
    free_port,
    http_get,
    parse_metrics,
    wait_port,
)

MODULES = {"http": "http_health", "tcp": "tcp_connect", "tls": "tls_connect"}
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


@dataclass
class Report:
    quick: bool
    sections: dict[str, list[list[str]]] = field(default_factory=dict)
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.sections[title] = [header, *rows]
        print(f"\n## {title}")
        print(render(header, rows))
        sys.stdout.flush()

    def goal(self, text: str, met: bool | None, detail: str) -> None:
        self.goals.append((text, met, detail))


def render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def sleep_until(when: float) -> None:
    while (rest := when - time.time()) > 0:
        time.sleep(min(rest, 1.0))


def probes_total(text: str) -> dict[str, float]:
    return {
        labels["target"]: value for labels, value in parse_metrics(text, {"prober_probes_total"})["prober_probes_total"]
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


# --- 1. CPU per probe -----------------------------------------------------------------------------


def prober_targets(kind: str, nginx: Nginx, count: int, interval: float, timeout: float) -> list[dict[str, Any]]:
    common = {"interval": f"{interval:g}s", "timeout": f"{timeout:g}s"}
    if kind == "http":
        return [
            {"name": f"h{i}", "kind": "http", "url": nginx.url(i), "body_status_field": "status", **common}
            for i in range(count)
        ]
    if kind == "tcp":
        return [{"name": f"t{i}", "kind": "tcp", "address": f"127.0.0.1:{nginx.port}", **common} for i in range(count)]
    return [
        {
            "name": f"s{i}",
            "kind": "tls",
            "address": f"127.0.0.1:{nginx.tls_port}",
            "server_name": "localhost",
            "ca_file": str(nginx.ca_file),
            **common,
        }
        for i in range(count)
    ]


def blackbox_targets(kind: str, nginx: Nginx, count: int) -> list[str]:
    if kind == "http":
        return [nginx.url(i) for i in range(count)]
    port = nginx.port if kind == "tcp" else nginx.tls_port
    return [f"127.0.0.1:{port}"] * count  # kept apart by a per-target label


FLOOR_SCRIPT = """
import resource, socket, ssl, sys
port, ca_file, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(cafile=ca_file)
def handshake():
    with socket.create_connection(("127.0.0.1", port)) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.getpeercert(binary_form=True)
for _ in range(20):
    handshake()
usage = resource.getrusage(resource.RUSAGE_SELF)
before = usage.ru_utime + usage.ru_stime
for _ in range(count):
    handshake()
usage = resource.getrusage(resource.RUSAGE_SELF)
print((usage.ru_utime + usage.ru_stime - before) / count * 1000)
"""


def tls_floor_ms(nginx: Nginx, count: int) -> float:
    """CPU per TLS handshake of the leanest Python client: blocking socket, ssl module, same CA and checks,
    nothing else (no event loop, no result). What any Python prober pays at least."""
    argv = [sys.executable, "-c", FLOOR_SCRIPT, str(nginx.tls_port), str(nginx.ca_file), str(count)]
    return float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


def cpu_per_probe(report: Report, stack: Stack, nginx: Nginx) -> None:
    count, interval, timeout = (100, 2.0, 1.0) if report.quick else (200, 2.0, 1.0)
    window = 10.0 if report.quick else 30.0
    rows: list[list[str]] = []
    results: dict[str, dict[str, Any]] = {}
    for kind in ("http", "tcp", "tls"):
        log(f"cpu per probe: {kind}, {count} targets every {interval:g}s, window {window:g}s")
        targets = prober_targets(kind, nginx, count, interval, timeout)
        probers = {"prober": Prober(stack, targets, name=f"prober-{kind}")}
        if HAVE_UVLOOP:
            probers["prober+uvloop"] = Prober(stack, targets, name=f"prober-uvloop-{kind}", uvloop=True)
        blackbox = Blackbox(stack, nginx.ca_file, timeout, name=f"blackbox-{kind}")
        job = f"bb_{kind}"
        prom = Prometheus(
            stack, blackbox.port, {job: (MODULES[kind], blackbox_targets(kind, nginx, count))}, interval, 1.5
        )
        for prober in probers.values():
            prober.wait_ready()
        time.sleep(2 * interval + 1)  # every Prometheus target has been scraped, the daemons are warm
        start = time.time()
        cpu0 = {name: p.proc.cpu() for name, p in probers.items()}
        cpu0["blackbox"], cpu0["prometheus"] = blackbox.proc.cpu(), prom.proc.cpu()
        count0 = {name: sum(probes_total(p.metrics()[0]).values()) for name, p in probers.items()}
        end = start + window
        sleep_until(end)
        cpu1 = {name: p.proc.cpu() for name, p in probers.items()}
        cpu1["blackbox"], cpu1["prometheus"] = blackbox.proc.cpu(), prom.proc.cpu()
        count1 = {name: sum(probes_total(p.metrics()[0]).values()) for name, p in probers.items()}
        failed = {name: p.status()["status"] != "ok" for name, p in probers.items()}
        rss = {name: p.proc.rss() for name, p in probers.items()}
        rss["blackbox"] = blackbox.proc.rss()
        time.sleep(interval + 1)  # the last scrapes of the window are stored
        span = f"{int(window * 1000)}ms"
        scrapes = prom.scalar(f'sum(count_over_time(up{{job="{job}"}}[{span}]))', end)
        successes = prom.scalar(f'sum(sum_over_time(probe_success{{job="{job}"}}[{span}]))', end)
        expected = count * window / interval
        entry: dict[str, Any] = {"expected_probes": expected}
        for name in probers:
            probes = count1[name] - count0[name]
            entry[name] = {"cpu": cpu1[name] - cpu0[name], "probes": probes, "rss_mb": rss[name]}
        entry["blackbox"] = {
            "cpu": cpu1["blackbox"] - cpu0["blackbox"],
            "probes": scrapes,
            "successes": successes,
            "rss_mb": rss["blackbox"],
        }
        entry["prometheus_cpu"] = cpu1["prometheus"] - cpu0["prometheus"]
        bb_ms = entry["blackbox"]["cpu"] / max(1.0, scrapes) * 1000
        for name in probers:
            e = entry[name]
            e["ms"] = e["cpu"] / max(1.0, e["probes"]) * 1000
            rows.append(
                [
                    kind,
                    name,
                    f"{e['probes']:.0f}",
                    f"{e['cpu']:.2f}",
                    f"{e['ms']:.3f}",
                    f"{e['ms'] / bb_ms:.2f}",
                    "all ok" if not failed[name] else "FAILURES",
                ]
            )
        rows.append(
            [
                kind,
                "blackbox_exporter",
                f"{scrapes:.0f}",
                f"{entry['blackbox']['cpu']:.2f}",
                f"{bb_ms:.3f}",
                "1.00",
                f"{successes:.0f} successful",
            ]
        )
        entry["blackbox"]["ms"] = bb_ms
        if kind == "tls":
            entry["floor_ms"] = floor = tls_floor_ms(nginx, count * 5)
            rows.append(
                [
                    kind,
                    "floor: bare blocking handshake in Python",
                    f"{count * 5}",
                    "-",
                    f"{floor:.3f}",
                    f"{floor / bb_ms:.2f}",
                    "not a prober: no event loop, no result",
                ]
            )
        results[kind] = entry
        log(f"  {kind}: prober {entry['prober']['ms']:.3f} ms, blackbox {bb_ms:.3f} ms; expected {expected:.0f}")
        for proc in [*(p.proc for p in probers.values()), prom.proc, blackbox.proc]:
            stack.stop(proc)
    report.data["cpu"] = results
    report.table(
        f"1. CPU per probe ({count} targets each, every {interval:g}s, {window:g}s window, all at once)",
        ["kind", "exporter", "probes in window", "CPU s", "CPU ms/probe", "ratio to blackbox", "outcome"],
        rows,
    )
    for kind, entry in results.items():
        ratio = entry["prober"]["ms"] / entry["blackbox"]["ms"]
        report.goal(
            f"CPU per {kind.upper()} probe <= 0.5x blackbox_exporter's",
            ratio <= 0.5,
            f"ratio {ratio:.2f} ({entry['prober']['ms']:.3f} vs {entry['blackbox']['ms']:.3f} ms)"
            + (
                f"; a bare blocking Python handshake alone: {entry['floor_ms']:.3f} ms, ratio "
                f"{entry['floor_ms'] / entry['blackbox']['ms']:.2f}"
                if "floor_ms" in entry
                else ""
            ),
        )


# --- 2. Scale ---------------------------------------------------------------------------------------


def histogram(text: str, name: str) -> dict[str, float]:
    samples = parse_metrics(text, {f"{name}_bucket", f"{name}_count"})
    out = {labels["le"]: value for labels, value in samples[f"{name}_bucket"]}
    out["count"] = sum(v for _, v in samples[f"{name}_count"])
    return out


def lag_quantile(before: dict[str, float], after: dict[str, float], q: float) -> tuple[float, float]:
    """(the q-quantile by linear interpolation within buckets, the fraction of runs at or under 0.25 s)."""
    total = after["count"] - before["count"]
    if total <= 0:
        return float("nan"), float("nan")
    bounds = sorted(float(le) for le in after if le not in ("count", "+Inf"))
    previous_bound, previous_count = 0.0, 0.0
    quantile = float("inf")
    for bound in bounds:
        key = next(k for k in after if k not in ("count", "+Inf") and float(k) == bound)
        cumulative = after[key] - before.get(key, 0.0)
        if cumulative >= q * total and quantile == float("inf"):
            span = cumulative - previous_count
            quantile = previous_bound + (bound - previous_bound) * ((q * total - previous_count) / span if span else 1)
        previous_bound, previous_count = bound, cumulative
    under = next(after[k] - before.get(k, 0.0) for k in after if k not in ("count", "+Inf") and float(k) == 0.25)
    return quantile, under / total


def scale_step(
    stack: Stack, nginx: Nginx, count: int, windows: int, variant: str, buckets: list[float] | None, uvloop: bool
) -> dict[str, Any]:
    interval = 15.0
    targets = prober_targets("http", nginx, count, interval, 5.0)
    name = f"prober-scale-{count}-{len(stack.procs)}"
    metrics = None if buckets is None else {"duration_buckets": buckets}
    prober = Prober(stack, targets, name=name, uvloop=uvloop, metrics=metrics)
    try:
        ready = prober.wait_ready(timeout=interval * 4 + 60)
        time.sleep(1.0)
        text, _ = prober.metrics(OPENMETRICS_ACCEPT)
        start = time.time()
        cpu0 = prober.proc.cpu()
        lag0, probes0 = histogram(text, "prober_scheduler_lag_seconds"), probes_total(text)
        renders: list[tuple[float, int]] = []
        end = start + windows * interval
        scrape_at = start + interval / 2
        while scrape_at < end:  # Prometheus would scrape the prober every 15 s: so do we
            sleep_until(scrape_at)
            body, elapsed = prober.metrics(OPENMETRICS_ACCEPT)
            renders.append((elapsed, len(body.encode())))
            scrape_at += interval
        sleep_until(end)
        cpu1 = prober.proc.cpu()
        wall = time.time() - start
        text, elapsed = prober.metrics(OPENMETRICS_ACCEPT)
        renders.append((elapsed, len(text.encode())))
        plain, plain_elapsed = prober.metrics()
        lag1, probes1 = histogram(text, "prober_scheduler_lag_seconds"), probes_total(text)
        deltas = [probes1.get(t, 0.0) - probes0.get(t, 0.0) for t in probes1]
        last_runs = parse_metrics(text, {"prober_last_run_timestamp_seconds"})["prober_last_run_timestamp_seconds"]
        oldest = time.time() - min(v for _, v in last_runs)
        p99, under = lag_quantile(lag0, lag1, 0.99)
        cores = (cpu1 - cpu0) / wall
        missed = sum(1 for d in deltas if d < windows)
        result = {
            "targets": count,
            "variant": variant,
            "ready_s": ready,
            "cores": cores,
            "rss_mb": prober.proc.rss(),
            "probes": sum(deltas),
            "targets_short": missed,
            "oldest_last_run_s": oldest,
            "lag_p99_s": p99,
            "lag_under_250ms": under,
            "metrics_s": max(r[0] for r in renders),
            "metrics_s_median": statistics.median(r[0] for r in renders),
            "metrics_bytes": renders[-1][1],
            "metrics_text_s": plain_elapsed,
            "metrics_text_bytes": len(plain.encode()),
            "fd_limit": open_file_limit(prober.proc.pid),
        }
        result["sustained"] = missed == 0 and under >= 0.99 and cores <= 1.0
        return result
    finally:
        stack.stop(prober.proc)


def open_file_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "?"


def render_in_process(report: Report, count: int = 10000) -> None:
    """/metrics for ``count`` HTTP targets with a result each, rendered in this process (no HTTP, no load)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    from prober import metrics
    from prober.probes.http import HttpTarget
    from prober.status import Board, ok

    board = Board(metrics.LAG_BUCKETS)
    targets = [HttpTarget(name=f"h{i}", kind="http", url=f"http://127.0.0.1:1/health?i={i}") for i in range(count)]
    board.apply(targets)
    for target in targets:
        result = ok("HTTP 200", latency=0.0012, phases={"connect": 3e-4, "request": 7e-4, "body": 1e-4})
        board.targets[target.name].record(result, 1, 1)
    registry = metrics.make_registry(board)
    rows = []
    renderers: list[tuple[str, Any]] = [
        ("prometheus_client generate_latest (text 0.0.4)", generate_latest),
        ("prometheus_client generate_latest (OpenMetrics)", openmetrics_latest),
    ]
    fast = getattr(metrics, "render", None)  # present since the fast renderer (bench/PROFILE.md)
    if fast is not None:
        renderers += [
            ("prober.metrics.render (text 0.0.4)", lambda r: fast(r, openmetrics=False)),
            ("prober.metrics.render (OpenMetrics)", lambda r: fast(r, openmetrics=True)),
        ]
    out = {}
    for name, renderer in renderers:
        started = time.perf_counter()
        body = renderer(registry)
        elapsed = time.perf_counter() - started
        out[name] = {"seconds": elapsed, "bytes": len(body)}
        rows.append([name, f"{elapsed:.3f}", f"{len(body) / 1e6:.1f} MB"])
    report.data["render_in_process"] = out
    report.table(f"2b. /metrics rendering for {count} targets, in process", ["renderer", "seconds", "size"], rows)


DEFAULT_BUCKETS = "default buckets"
FEW_BUCKETS = "metrics.duration_buckets: [0.1, 0.5, 1, 5]"
FEW = [0.1, 0.5, 1.0, 5.0]  # the central kit's setting (deploy/kubernetes/central/configmap.yaml)


def scale(report: Report, stack: Stack, nginx: Nginx, uvloop_too: bool) -> None:
    render_in_process(report)
    # (variant, targets, intervals measured, duration buckets, uvloop)
    plan: list[tuple[str, int, int, list[float] | None, bool]]
    if report.quick:
        plan = [(DEFAULT_BUCKETS, 10000, 1, None, False), (FEW_BUCKETS, 10000, 1, FEW, False)]
    else:
        plan = [(DEFAULT_BUCKETS, n, 2, None, False) for n in (5000, 10000)]
        plan += [(FEW_BUCKETS, n, 2, FEW, False) for n in (10000, 15000)]
        if uvloop_too and HAVE_UVLOOP:
            plan += [(f"{FEW_BUCKETS}, uvloop", 10000, 2, FEW, True)]
    results: list[dict[str, Any]] = []
    for variant, count, windows, buckets, uv in plan:
        log(f"scale: {count} HTTP targets every 15s ({variant}), {windows} interval(s) measured")
        results.append(scale_step(stack, nginx, count, windows, variant, buckets, uv))
        log(f"  {json.dumps(results[-1])}")
    report.data["scale"] = results
    rows = [
        [
            str(r["targets"]),
            r["variant"],
            f"{r['cores']:.3f}",
            f"{r['rss_mb']:.0f}",
            f"{r['probes']:.0f}",
            str(r["targets_short"]),
            f"{r['lag_p99_s'] * 1000:.0f}" if r["lag_p99_s"] != float("inf") else "> 5000",
            f"{r['lag_under_250ms'] * 100:.2f}%",
            f"{r['metrics_s']:.3f} / {r['metrics_text_s']:.3f}",
            f"{r['metrics_bytes'] / 1e6:.1f} MB",
            f"{r['ready_s']:.1f}",
            r["fd_limit"],
            "yes" if r["sustained"] else "no",
        ]
        for r in results
    ]
    report.table(
        "2. Scale: HTTP targets every 15 s (timeout 5 s), one prober process, /metrics scraped every 15 s",
        [
            "targets",
            "config",
            "cores",
            "RSS MB",
            "probes",
            "targets missing a run",
            "lag p99 ms",
            "lag <= 250 ms",
            "/metrics s (OpenMetrics / text)",
            "/metrics size",
            "first round s",
            "nofile soft/hard",
            "sustained",
        ],
        rows,
    )
    for variant in (DEFAULT_BUCKETS, FEW_BUCKETS):
        chosen = [r for r in results if r["variant"] == variant]
        if not chosen:
            continue
        best = max((r["targets"] for r in chosen if r["sustained"]), default=0)
        report.data[f"scale_best/{variant}"] = best
        report.notes.append(f"Scale ({variant}): largest sustained step {best} HTTP targets at 15 s in one process.")
        at10k = next((r for r in chosen if r["targets"] == 10000), None)
        if at10k is None:
            continue
        report.goal(
            f"10,000 HTTP targets at 15 s within half a core and lag p99 < 250 ms (/metrics {variant})",
            at10k["cores"] <= 0.5 and at10k["lag_under_250ms"] >= 0.99 and at10k["targets_short"] == 0,
            f"{at10k['cores']:.2f} cores, {at10k['lag_under_250ms'] * 100:.2f}% of runs within 250 ms, "
            f"{at10k['targets_short']} targets missed a run",
        )
        report.goal(
            f"/metrics for 10,000 targets in under 0.5 s ({variant})",
            at10k["metrics_s"] < 0.5,
            f"{at10k['metrics_s']:.3f} s (slowest scrape, OpenMetrics), {at10k['metrics_bytes'] / 1e6:.1f} MB",
        )


# --- 3. Accuracy ------------------------------------------------------------------------------------


def accuracy(report: Report, stack: Stack, nginx: Nginx, delay: float = 0.05) -> None:
    count, interval = 5, 1.0
    window = 15.0 if report.quick else 40.0
    http_port = free_port()
    http_peer = stack.start([sys.executable, "-m", "bench.peers", "http", str(http_port), str(delay)], "peer-http")
    wait_port(http_port)
    tcp_stats = stack.dir / "tcp-peer.json"
    tun = os.geteuid() == 0 and os.path.exists("/dev/net/tun")
    tcp_peer = None
    if tun:
        tcp_peer = stack.start([sys.executable, "-m", "bench.peers", "tcp", str(delay), str(tcp_stats)], "peer-tcp")
        deadline = time.monotonic() + 10
        while "ready" not in tcp_peer.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    tcp_address = [f"10.77.0.2:{8000 + i}" for i in range(count)] if tun else [f"127.0.0.1:{http_port}"] * count
    tcp_delay = delay if tun else 0.0
    common = {"interval": f"{interval:g}s", "timeout": "900ms"}
    http_url = [f"http://127.0.0.1:{http_port}/health?i={i}" for i in range(count)]
    targets = [
        *(
            {"name": f"ah{i}", "kind": "http", "url": u, "body_status_field": "status", **common}
            for i, u in enumerate(http_url)
        ),
        *({"name": f"at{i}", "kind": "tcp", "address": a, **common} for i, a in enumerate(tcp_address)),
    ]
    log(
        f"accuracy: {count} HTTP + {count} TCP targets every {interval:g}s, {window:g}s, true delay {delay * 1000:g} ms"
    )
    prober = Prober(stack, targets, name="prober-accuracy")
    blackbox = Blackbox(stack, nginx.ca_file, 0.9, name="blackbox-accuracy")
    prom = Prometheus(
        stack,
        blackbox.port,
        {"acc_http": ("http_health", http_url), "acc_tcp": ("tcp_connect", tcp_address)},
        interval,
        0.95,
    )
    prober.wait_ready()
    time.sleep(3)
    start = time.time()
    seen: dict[tuple[str, str], float] = {}
    while time.time() < start + window:
        for name, check in prober.status()["checks"].items():
            if check["latency_ms"] is not None and check["status"] == "ok":
                seen[(name, check["last_run"])] = check["latency_ms"] / 1000
        time.sleep(0.2)
    end = time.time()
    time.sleep(interval + 0.5)
    span = f"{int((end - start) * 1000)}ms"
    bb: dict[str, list[float]] = {}
    for job in ("acc_http", "acc_tcp"):
        series = prom.query(f'probe_duration_seconds{{job="{job}"}}[{span}]', end)
        success = prom.query(f'probe_success{{job="{job}"}}[{span}]', end)
        ok = {(s["metric"]["instance"], s["metric"]["i"], v[0]) for s in success for v in s["values"] if v[1] == "1"}
        bb[job] = [
            float(v[1]) for s in series for v in s["values"] if (s["metric"]["instance"], s["metric"]["i"], v[0]) in ok
        ]
    _, stats_body = http_get(f"http://127.0.0.1:{http_port}/stats")
    peer_http = json.loads(stats_body)
    stack.stop(http_peer)
    peer_tcp: dict[str, Any] = {}
    if tcp_peer is not None:
        stack.stop(tcp_peer)
        peer_tcp = json.loads(tcp_stats.read_text()) if tcp_stats.exists() else {}
    for proc in (prober.proc, prom.proc, blackbox.proc):
        stack.stop(proc)
    ours = {
        "http": [v for (n, _), v in seen.items() if n.startswith("ah")],
        "tcp": [v for (n, _), v in seen.items() if n.startswith("at")],
    }
    theirs = {"http": bb["acc_http"], "tcp": bb["acc_tcp"]}
    truth = {"http": delay, "tcp": tcp_delay}
    rows = []
    results: dict[str, Any] = {"peer_http": peer_http, "peer_tcp": peer_tcp, "tun": tun}
    for kind in ("http", "tcp"):
        for name, values in (("prober", ours[kind]), ("blackbox_exporter", theirs[kind])):
            if not values:
                rows.append([kind, name, "0", "-", "-", "-"])
                continue
            errors = [(v - truth[kind]) * 1000 for v in values]
            entry = {"n": len(errors), "median_ms": statistics.median(errors), "p99_ms": pct(errors, 0.99)}
            results[f"{kind}/{name}"] = entry
            rows.append(
                [
                    kind,
                    name,
                    str(entry["n"]),
                    f"{truth[kind] * 1000:g}",
                    f"{entry['median_ms']:.3f}",
                    f"{entry['p99_ms']:.3f}",
                ]
            )
    report.data["accuracy"] = results
    tcp_how = (
        "a tun-device peer answering each SYN 50 ms late (tc netem is not available in this kernel)"
        if tun
        else "the HTTP delay peer's port: the handshake itself is the only delay (true delay taken as 0)"
    )
    report.table(
        "3. Accuracy: reported latency minus the true delay",
        ["kind", "exporter", "samples", "true delay ms", "error median ms", "error p99 ms"],
        rows,
    )
    report.notes.append(
        f"Accuracy peers: HTTP answers {delay * 1000:g} ms after the request arrived (its own overshoot: median "
        f"{peer_http.get('overshoot_median_ms', float('nan')):.3f} ms, "
        f"p99 {peer_http.get('overshoot_p99_ms', float('nan')):.3f} ms); "
        f"TCP: {tcp_how}"
        + (
            f" (overshoot median {peer_tcp.get('overshoot_median_ms', float('nan')):.3f} ms, p99 "
            f"{peer_tcp.get('overshoot_p99_ms', float('nan')):.3f} ms)."
            if peer_tcp
            else "."
        )
        + " Errors include the peer's overshoot and loopback connect/request time, the same for both exporters."
    )
    for kind in ("http", "tcp"):
        ours_e, theirs_e = results.get(f"{kind}/prober"), results.get(f"{kind}/blackbox_exporter")
        if ours_e and theirs_e:
            report.goal(
                f"{kind.upper()} latency error no worse than blackbox_exporter's and < 2 ms median",
                ours_e["median_ms"] < 2 and abs(ours_e["median_ms"]) <= abs(theirs_e["median_ms"]) + 0.05,
                f"median {ours_e['median_ms']:.3f} vs {theirs_e['median_ms']:.3f} ms, p99 {ours_e['p99_ms']:.3f} vs "
                f"{theirs_e['p99_ms']:.3f} ms",
            )


# --- 4. Footprint -----------------------------------------------------------------------------------


def footprint(report: Report, stack: Stack, nginx: Nginx) -> None:
    rows = []
    variants = [False, True] if HAVE_UVLOOP else [False]
    out: dict[str, Any] = {}
    for uv in variants:
        log(f"footprint: 10 HTTP targets every 15s{' on uvloop' if uv else ''}")
        targets = prober_targets("http", nginx, 10, 15.0, 5.0)
        prober = Prober(stack, targets, name=f"prober-idle{'-uvloop' if uv else ''}", uvloop=uv)
        listening = prober.wait_listening()
        ready = prober.wait_ready(timeout=30)
        time.sleep(5)
        rss = prober.proc.rss()
        cpu = prober.proc.cpu()
        stack.stop(prober.proc)
        name = "prober+uvloop" if uv else "prober"
        out[name] = {"listening_s": listening, "first_round_s": ready, "rss_mb": rss, "cpu_s": cpu}
        rows.append([name, f"{rss:.1f}", f"{listening:.2f}", f"{ready:.2f}", f"{cpu:.2f}"])
    blackbox = Blackbox(stack, nginx.ca_file, 5.0, name="blackbox-idle")
    for i in range(10):
        http_get(f"http://127.0.0.1:{blackbox.port}/probe?module=http_health&target={nginx.url(i)}")
    rows.append(["blackbox_exporter (10 probes done)", f"{blackbox.proc.rss():.1f}", "-", "-", "-"])
    stack.stop(blackbox.proc)
    report.data["footprint"] = out
    report.table(
        "4. Footprint: 10 HTTP targets, 15 s interval, 5 s timeout",
        ["process", "idle RSS MB", "listening after s", "first complete round after s", "CPU s incl. start-up"],
        rows,
    )
    ours = out["prober"]
    report.goal("idle RSS under 60 MB (10 targets)", ours["rss_mb"] < 60, f"{ours['rss_mb']:.1f} MB")
    report.goal(
        "first complete round within one interval plus one timeout (20 s)",
        ours["first_round_s"] <= 20,
        f"{ours['first_round_s']:.2f} s from process start",
    )


# --- 5. Dependency probes ---------------------------------------------------------------------------


def registered_kinds() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", "from prober.probes import PROBES; print(' '.join(PROBES))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return set(out.stdout.split())


def last_run_seconds(iso: str | None) -> float:
    if iso is None:
        return 0.0
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def dependencies(report: Report, stack: Stack) -> None:
    kinds = registered_kinds()
    missing = {"postgres", "redis"} - kinds
    if missing:
        report.notes.append(f"5. Dependency probes: not done, kinds not registered: {', '.join(sorted(missing))}.")
        return
    count, interval = 5, 1.0
    window = 10.0 if report.quick else 20.0
    log(f"dependency probes: PostgreSQL and Redis, {count} targets each every {interval:g}s, {window:g}s")
    pg = Postgres(stack)
    try:
        redis = Redis(stack)
        common = {"interval": f"{interval:g}s", "timeout": "900ms"}
        probers = {
            "postgres": Prober(
                stack,
                [{"name": f"pg{i}", "kind": "postgres", "dsn": pg.dsn, **common} for i in range(count)],
                name="prober-postgres",
            ),
            "redis": Prober(
                stack,
                [{"name": f"rd{i}", "kind": "redis", "url": redis.url, **common} for i in range(count)],
                name="prober-redis",
            ),
        }
        for prober in probers.values():
            prober.wait_ready()
        time.sleep(2)
        before = {k: (p.proc.cpu(), p.metrics()[0]) for k, p in probers.items()}
        start = time.time()
        samples: dict[str, list[int]] = {"postgres": [], "redis": []}
        counters = {"postgres": pg.client_backends, "redis": redis.other_clients}
        while time.time() < start + window:
            time.sleep(random.uniform(0.05, 0.15))
            for kind, prober in probers.items():
                # between runs: every target's last run ended 0.3 to 0.7 s ago (runs take well under 0.3 s)
                ages = [time.time() - last_run_seconds(c["last_run"]) for c in prober.status()["checks"].values()]
                if ages and 0.3 < min(ages) and max(ages) < 0.7:
                    samples[kind].append(counters[kind]())
        after = {k: (p.proc.cpu(), p.metrics()[0]) for k, p in probers.items()}
        rows = []
        out: dict[str, Any] = {}
        for kind, prober in probers.items():
            status = prober.status()
            h0 = parse_metrics(
                before[kind][1], {"prober_probe_duration_seconds_sum", "prober_probe_duration_seconds_count"}
            )
            h1 = parse_metrics(
                after[kind][1], {"prober_probe_duration_seconds_sum", "prober_probe_duration_seconds_count"}
            )
            runs = sum(v for _, v in h1["prober_probe_duration_seconds_count"]) - sum(
                v for _, v in h0["prober_probe_duration_seconds_count"]
            )
            seconds = sum(v for _, v in h1["prober_probe_duration_seconds_sum"]) - sum(
                v for _, v in h0["prober_probe_duration_seconds_sum"]
            )
            cpu = after[kind][0] - before[kind][0]
            states = sorted({c["status"] for c in status["checks"].values()})
            out[kind] = {
                "runs": runs,
                "cpu_ms": cpu / max(1, runs) * 1000,
                "wall_ms": seconds / max(1, runs) * 1000,
                "connections": samples[kind],
                "states": states,
            }
            rows.append(
                [
                    kind,
                    f"{runs:.0f}",
                    f"{out[kind]['cpu_ms']:.2f}",
                    f"{out[kind]['wall_ms']:.2f}",
                    f"max {max(samples[kind], default=0)} in {len(samples[kind])} samples",
                    ",".join(states),
                ]
            )
            stack.stop(prober.proc)
        report.data["dependencies"] = out
        report.table(
            "5. Dependency probes: fresh connection per run, real servers",
            ["kind", "runs", "CPU ms/run", "wall ms/run (mean)", "server-side connections between runs", "state"],
            rows,
        )
    finally:
        pg.stop()


# --- the report ---------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    versions = {}
    for binary, flag in (
        ("/usr/bin/prometheus-blackbox-exporter", "--version"),
        ("/usr/bin/prometheus", "--version"),
        ("/usr/sbin/nginx", "-v"),
    ):
        out = subprocess.run([binary, flag], capture_output=True, text=True, check=False)
        versions[Path(binary).name] = (out.stdout + out.stderr).splitlines()[0] if (out.stdout + out.stderr) else "?"
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        **versions,
    }


def write_results(report: Report, command: str, info: dict[str, str], elapsed: float, out: Path) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{command}` ({'quick' if report.quick else 'full'} mode, {elapsed / 60:.1f} min)",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Python {info['python']}; "
        f"load average at the start {info['load']}; {info['date']}.",
        f"Peers: {info['prometheus-blackbox-exporter']}; {info['prometheus']}; {info['nginx']}.",
        "",
        "Absolute times on this shared, noisy machine are context; the ratios, measured in the same run on the "
        "same targets at the same rate, are the result.",
        "",
        "## Goals",
        "",
        "| goal | met | measured |",
        "|---|---|---|",
    ]
    for text, met, detail in report.goals:
        lines.append(f"| {text} | {'met' if met else ('not met' if met is False else 'n/a')} | {detail} |")
    for title, table in report.sections.items():
        lines += ["", f"## {title}", "", render(table[0], table[1:])]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    lines += ["", "## How the numbers are taken", "", METHOD.strip(), ""]
    lines += [
        "",
        "<details><summary>raw data (JSON)</summary>",
        "",
        "```json",
        json.dumps(report.data, indent=1),
        "```",
        "",
        "</details>",
        "",
    ]
    out.write_text("\n".join(lines))


METHOD = """
- **CPU per probe**: each exporter's CPU seconds are utime+stime from `/proc/PID/stat` (all threads, children
  excluded), read at the start and the end of the same wall-clock window. The prober runs its own schedule
  (`python -m prober run -c CONFIG`); its probe count is the delta of `sum(prober_probes_total)` read from its
  `/metrics` at both ends. blackbox_exporter is driven by a real Prometheus scraping `/probe?target=...&module=...`
  for every target at the same interval; its probe count is `sum(count_over_time(up{job=...}[WINDOW]))` evaluated
  at the window's end: one `up` sample per scrape, i.e. per probe, whose timestamp falls in the window (the
  window is a whole number of intervals, so every target contributes exactly window/interval scrapes).
  Prometheus's own CPU is not counted for blackbox_exporter (it is reported in the raw data). HTTP: both
  check the status and the body (`body_status_field: status` / `fail_if_body_not_matches_regexp`), fresh
  connection per probe. TLS: full handshake with chain and hostname verification against the trustme CA
  (nginx has session caches and tickets off; neither client resumes sessions).
  `prober+uvloop` is the same daemon started through `uvloop.install()` (the optional `uvloop` extra).
- **Scale**: one prober process with N HTTP targets at 15 s (timeout 5 s) against one nginx worker. After the
  first complete round, /metrics is fetched once per interval with Prometheus's Accept header (OpenMetrics),
  as Prometheus would; the measured window is one or two intervals. Sustained means: every target's
  `prober_probes_total` grew by at least the number of intervals, at least 99 % of runs started within
  250 ms of their scheduled time (from the `prober_scheduler_lag_seconds` bucket `le="0.25"`, an exact count;
  the p99 shown is interpolated within buckets), and CPU <= 1 core. /metrics time is the slowest request's
  wall time as seen by the client (OpenMetrics), then the classic text format once at the end.
- **Accuracy**: the HTTP peer answers 50 ms after reading the request; the TCP peer owns a tun device and
  answers each SYN 50 ms late (the kernel would otherwise finish the handshake at once; `tc netem` is not
  available in this kernel). The prober's latencies come from polling `/status` (`latency_ms` of every new
  run); blackbox_exporter's are every stored `probe_duration_seconds` sample of successful probes in the window.
- **Footprint**: VmRSS (statm) 5 s after the first complete round; start-up time from process spawn to
  `/readyz` answering 200 (every target has a result).
- **Dependency probes**: real PostgreSQL 15 (scram-sha-256, no TLS: `sslmode=disable`) and Redis 7 with a
  password; one prober process per kind; CPU per run as above; wall time per run is the mean of the
  `prober_probe_duration_seconds` histogram delta; server-side connections are counted from
  `pg_stat_activity` (client backends other than the counting query's own) and `CLIENT LIST` (minus the
  counting client), sampled only between runs: when every target's last run ended 0.3 to 0.7 s before.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 4 minutes instead of about 10")
    parser.add_argument(
        "--only", default="cpu,scale,accuracy,footprint,deps", help="comma-separated parts (default: all)"
    )
    parser.add_argument("--no-uvloop-scale", action="store_true", help="skip the uvloop run at 10,000 targets")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop every server on SIGTERM too
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by nginx
    parts = set(args.only.split(","))
    report = Report(quick=args.quick)
    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['load']}, {info['date']}")
    started = time.time()
    stack = Stack()
    try:
        nginx = Nginx(stack)
        if "cpu" in parts:
            cpu_per_probe(report, stack, nginx)
        if "accuracy" in parts:
            accuracy(report, stack, nginx)
        if "footprint" in parts:
            footprint(report, stack, nginx)
        if "scale" in parts:
            scale(report, stack, nginx, uvloop_too=not args.quick and not args.no_uvloop_scale)
        if "deps" in parts:
            dependencies(report, stack)
    finally:
        stack.close()
    print("\n## Goals")
    print(
        render(
            ["goal", "met", "measured"],
            [[t, "met" if m else ("NOT met" if m is False else "n/a"), d] for t, m, d in report.goals],
        )
    )
    for note in report.notes:
        print(f"- {note}")
    command = ".venv/bin/python -m bench.run" + (" --quick" if args.quick else "")
    if parts != {"cpu", "scale", "accuracy", "footprint", "deps"}:
        command += f" --only {args.only}"
    write_results(report, command, info, time.time() - started, Path(args.out))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
