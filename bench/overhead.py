"""What a run costs outside the probe itself, and /metrics rendering at scale (bench/PROFILE.md, section 8).

    .venv/bin/python -m bench.overhead inprocess [--targets 10000] [--seconds 30] [--pyspy FILE]
        The daemon's own pieces (Board, Scheduler, runner.run_probe, TargetStatus.record) with an instant
        probe in place of the tcp one: CPU per run is everything but the probe.
    .venv/bin/python -m bench.overhead daemon [--kind tcp|http] [--targets 10000] [--seconds 60] [--pyspy FILE]
                                              [--buckets 0.1,1]
        ``python -m prober run`` with that many targets every 15 s, tcp against a local accept-and-close
        listener (a process of its own) or http against nginx; /metrics scraped every 15 s. Prints CPU of
        the daemon per run, the share of runs started within 250 ms, and each scrape's wall time.
    .venv/bin/python -m bench.overhead judge [--repeat 5]
        The judge of one http run (the kind's rules, then degraded_latency) without conditions, with two
        conditions over a NestJS-style readiness body (heap ratio and latency), and with components: the
        median CPU per run of each and what conditions and components add.
    .venv/bin/python -m bench.overhead render [--targets 10000] [--repeat 5] [--buckets 0.1,1]
        /metrics for that many HTTP targets with three results each (distinct latencies, phases and
        timestamps, as in a running daemon), rendered in this process, both formats: wall and CPU time.
        ``--buckets`` sets metrics.duration_buckets ('' for none).

``--pyspy FILE`` records the measured window with py-spy (raw stacks into FILE) and prints the top
functions by self and by inclusive share. Absolute numbers move a lot on a shared machine: compare
variants in one sitting, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cel_choice import health_body
from bench.servers import OPENMETRICS_ACCEPT, Nginx, Stack, free_port, http_get, parse_metrics, wait_port

PYSPY = Path(sys.executable).with_name("py-spy")
INTERVAL = 15.0


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- py-spy -------------------------------------------------------------------------------------


def pyspy_start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [str(PYSPY), "record", "-r", "200", "-f", "raw", "-d", str(int(seconds)), "-o", str(out), "-p", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


IDLE_WORKER = "_worker (concurrent/futures/thread.py:81)"


def _frame(text: str) -> str:
    """'func (path/to/module.py:12)' -> 'func (module.py)': lines of one function merged."""
    name, _, where = text.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def pyspy_top(raw: Path, count: int = 25) -> str:
    """Top functions of a py-spy raw file by self share and by inclusive share (each stack counted once)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        weight = int(samples)
        if stack.endswith(IDLE_WORKER):
            idle += weight  # a thread-pool worker blocked on its queue: py-spy counts it, but it costs nothing
            continue
        frames = [_frame(f) for f in stack.split(";")]
        total += weight
        own[frames[-1]] += weight
        for frame in set(frames):
            inclusive[frame] += weight
    lines = [f"{total} samples (left out: {idle} of an idle thread-pool worker)", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(count)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(count)]
    return "\n".join(lines)


# --- in process: the daemon's pieces with an instant probe ----------------------------------------


async def _inprocess(count: int, seconds: float, pyspy: Path | None) -> dict[str, Any]:
    from prober import runner
    from prober.judge import Observation
    from prober.metrics import LAG_BUCKETS
    from prober.probes import ProbeContext
    from prober.probes.tcp import TcpTarget
    from prober.scheduler import Scheduler
    from prober.status import Board

    async def instant(_target: Any, _ctx: Any) -> Observation:
        return Observation({}, "connected", latency=0.0002, phases={"connect": 0.0002})

    runner.PROBES["tcp"] = instant  # type: ignore[index]
    targets = tuple(
        TcpTarget(name=f"t{i}", kind="tcp", address="127.0.0.1:1", interval="15s", timeout="5s") for i in range(count)
    )
    board = Board(LAG_BUCKETS)
    scheduler = Scheduler(board, ProbeContext(), 500)
    scheduler.apply(targets)
    scheduler.start()
    await asyncio.sleep(INTERVAL + 1.0)  # the first round is spread over one interval: then it is steady
    runs0 = sum(t.probes_total for t in board.targets.values())
    lag0 = list(board.scheduler_lag.counts)
    spy = pyspy_start(os.getpid(), seconds, pyspy) if pyspy else None
    cpu0, wall0 = cpu_now(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1, wall1 = cpu_now(), time.perf_counter()
    runs = sum(t.probes_total for t in board.targets.values()) - runs0
    lag = [b - a for a, b in zip(lag0, board.scheduler_lag.counts, strict=True)]
    scheduler.shutdown()
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    cores = (cpu1 - cpu0) / (wall1 - wall0)
    under = sum(n for bound, n in zip(board.scheduler_lag.bounds, lag, strict=False) if bound <= 0.25)
    return {
        "targets": count,
        "runs": runs,
        "runs_per_s": round(runs / (wall1 - wall0), 1),
        "cores": round(cores, 4),
        "us_per_run": round(1e6 * (cpu1 - cpu0) / max(runs, 1), 1),
        "lag_under_250ms": round(under / max(sum(lag), 1), 4),
    }


# --- the daemon, with tcp targets against a local listener -----------------------------------------

LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
"""


def _lag(text: str) -> tuple[list[float], list[float]]:
    samples = parse_metrics(text, {"prober_scheduler_lag_seconds_bucket"})["prober_scheduler_lag_seconds_bucket"]
    bounds = [float(labels["le"]) for labels, _ in samples]
    return bounds, [value for _, value in samples]


def _runs(text: str) -> float:
    return sum(v for _, v in parse_metrics(text, {"prober_probes_total"})["prober_probes_total"])


def daemon(kind: str, count: int, seconds: float, pyspy: Path | None, buckets: str | None) -> dict[str, Any]:
    """The daemon probing ``count`` targets every 15 s; /metrics scraped (OpenMetrics) every 15 s, as
    Prometheus would, in the middle of each interval of the measured window."""
    stack = Stack()
    try:
        if kind == "http":
            nginx = Nginx(stack)
            targets: list[dict[str, Any]] = [
                {"name": f"h{i}", "kind": "http", "url": nginx.url(i), "body_status_field": "status"}
                for i in range(count)
            ]
        else:
            peer = free_port()
            stack.start([sys.executable, "-c", LISTENER, str(peer)], "listener")
            wait_port(peer)
            targets = [{"name": f"t{i}", "kind": "tcp", "address": f"127.0.0.1:{peer}"} for i in range(count)]
        port = free_port()
        document: dict[str, Any] = {"server": {"listen": f"127.0.0.1:{port}"}, "targets": targets}
        if buckets is not None:
            document["metrics"] = {"duration_buckets": [float(b) for b in buckets.split(",") if b]}
        config = stack.dir / "prober.yaml"
        config.write_text(json.dumps(document))
        argv = [sys.executable, "-m", "prober", "run", "-c", str(config), "--log-level", "warning"]
        prober = stack.start(argv, "prober")
        wait_port(port, timeout=120)
        time.sleep(INTERVAL + 5.0)  # first round spread over one interval, plus start-up
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        _, before = http_get(metrics_url, timeout=60)
        spy = pyspy_start(prober.pid, seconds, pyspy) if pyspy else None
        cpu0, wall0 = prober.cpu(), time.perf_counter()
        scrapes: list[float] = []
        scrape_at = wall0 + INTERVAL / 2
        while scrape_at < wall0 + seconds:
            time.sleep(max(0.0, scrape_at - time.perf_counter()))
            started = time.perf_counter()
            status, body = http_get(metrics_url, timeout=60, accept=OPENMETRICS_ACCEPT)
            scrapes.append(round(time.perf_counter() - started, 3))
            scrape_at += INTERVAL
        time.sleep(max(0.0, wall0 + seconds - time.perf_counter()))
        cpu1, wall1 = prober.cpu(), time.perf_counter()
        _, after = http_get(metrics_url, timeout=60)
        rss = prober.rss()
        if spy is not None:
            spy.wait()
    finally:
        stack.close()
    runs = _runs(after.decode()) - _runs(before.decode())
    bounds, lag1 = _lag(after.decode())
    _, lag0 = _lag(before.decode())
    total = lag1[-1] - lag0[-1]
    under = next(b - a for bound, a, b in zip(bounds, lag0, lag1, strict=True) if bound == 0.25)
    return {
        "kind": kind,
        "targets": count,
        "runs_per_s": round(runs / (wall1 - wall0), 1),
        "cores": round((cpu1 - cpu0) / (wall1 - wall0), 4),
        "us_per_run": round(1e6 * (cpu1 - cpu0) / max(runs, 1), 1),
        "lag_under_250ms": round(under / max(total, 1), 4),
        "scrape_s": scrapes,
        "metrics_mb": round(len(body) / 1e6, 1),
        "rss_mb": round(rss),
    }


# --- /metrics rendering in process ------------------------------------------------------------------


def render(count: int, repeat: int, buckets: tuple[float, ...] | None) -> dict[str, Any]:
    from prober import metrics
    from prober.probes.http import HttpTarget
    from prober.status import Board, ok

    board = Board(metrics.LAG_BUCKETS)
    if buckets is not None:
        board.set_duration_buckets(buckets)
    targets = [HttpTarget(name=f"h{i}", kind="http", url=f"http://127.0.0.1:1/health?i={i}") for i in range(count)]
    board.apply(targets)
    rng = random.Random(1)
    now = time.time()
    for run in range(3):  # as in a running daemon: latencies, phases and timestamps differ between targets
        for target in targets:
            connect, request = rng.uniform(1e-4, 5e-3), rng.uniform(1e-4, 5e-2)
            phases = {"connect": connect, "request": request, "body": rng.uniform(1e-5, 1e-3)}
            result = ok("HTTP 200", latency=connect + request, phases=phases)
            board.targets[target.name].record(result, 1, 1, now=now - 30 + 15 * run + rng.uniform(0, 15))
    registry = metrics.make_registry(board)
    out: dict[str, Any] = {"targets": count}
    for openmetrics in (True, False):
        walls, cpus = [], []
        for _ in range(repeat):
            started, cpu = time.perf_counter(), time.thread_time()
            body = metrics.render(registry, openmetrics)
            walls.append(time.perf_counter() - started)
            cpus.append(time.thread_time() - cpu)  # less disturbed than wall time by other work on the machine
        name = "openmetrics" if openmetrics else "text"
        out[name] = {"seconds": [round(t, 3) for t in walls], "cpu": [round(t, 3) for t in cpus]}
        out[name]["mb"] = round(len(body) / 1e6, 1)
    return out


HEALTH_BODY = health_body(heap_used_ratio=0.6)  # under the conditions' thresholds: an ok run


def judge_cost(repeat: int, count: int = 20000) -> dict[str, Any]:
    """CPU per run of prober.judge.judge for an http observation, median of ``repeat`` batches."""
    import statistics

    from prober.judge import Observation, judge
    from prober.probes import KINDS
    from prober.probes._components import components
    from prober.probes.http import HttpTarget

    kind = KINDS["http"]
    raw = json.dumps(HEALTH_BODY).encode()
    variants = {
        "no conditions": HttpTarget(name="a", kind="http", url="http://127.0.0.1/", body_status_field="status"),
        "two conditions": HttpTarget(
            name="a",
            kind="http",
            url="http://127.0.0.1/",
            body_status_field="status",
            unhealthy_if=["body.checks.memory.heapUsedRatio > 0.95"],
            degraded_if=["latency_ms > 300"],
        ),
        "components: auto": HttpTarget(
            name="a", kind="http", url="http://127.0.0.1/", body_status_field="status", components="auto"
        ),
    }
    out: dict[str, Any] = {}
    for name, target in variants.items():
        batches = []
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(count):
                body = json.loads(raw)
                values = {"status_code": 200, "headers": {}, "_raw_body": raw, "body": body, "_json": True}
                found, _ = components(body, target.components)
                if target.components != "none":
                    values["components"] = {n: c.state.value for n, c in found.items()}
                observed = Observation(values, "HTTP 200, status=ok", latency=0.004, components=found)
                judge(target, observed, kind.rules, 0.004, kind.hidden)
            batches.append((time.process_time() - started) / count * 1e6)
        out[name] = round(statistics.median(batches), 2)
    out["conditions add (us per run)"] = round(out["two conditions"] - out["no conditions"], 2)
    out["components add (us per run)"] = round(out["components: auto"] - out["no conditions"], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("inprocess", "daemon", "render", "judge"))
    parser.add_argument("--targets", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pyspy", type=Path, help="record the window with py-spy into this raw file")
    parser.add_argument("--buckets", help="metrics.duration_buckets: comma-separated seconds ('' for none)")
    parser.add_argument(
        "--kind", choices=("tcp", "http"), default="tcp", help="daemon: tcp (local listener) or http (nginx)"
    )
    args = parser.parse_args()
    if args.mode == "inprocess":
        result = asyncio.run(_inprocess(args.targets, args.seconds, args.pyspy))
    elif args.mode == "judge":
        result = judge_cost(args.repeat)
    elif args.mode == "daemon":
        result = daemon(args.kind, args.targets, args.seconds, args.pyspy, args.buckets)
    else:
        buckets = None
        if args.buckets is not None:
            buckets = tuple(float(b) for b in args.buckets.split(",") if b)
        result = render(args.targets, args.repeat, buckets)
    print(json.dumps(result))
    if args.pyspy is not None:
        print(pyspy_top(args.pyspy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
