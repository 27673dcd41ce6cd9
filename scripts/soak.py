"""Soak: many targets at a 1 s interval for a long time, mixing ok, failing, flapping and hanging peers
and real PostgreSQL and Redis servers; prints a curve of RSS, file descriptors, asyncio tasks and
connections left open on the servers, judges it, and writes the result.

    .venv/bin/python scripts/soak.py --minutes 30 --targets 500          # the real soak (not in CI)
    .venv/bin/python scripts/soak.py --minutes 1 --targets 200 --sample 5  # the short version CI runs

Goals (after warm-up, the first fifth of the run): RSS growth under 10 %, open file descriptors and
asyncio tasks flat (within 10 % or 10, whichever is larger), and zero connections older than 2 s on
the PostgreSQL and Redis servers (the prober opens a fresh connection per run and closes it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon import Daemon  # noqa: E402
from tests.peers import postgres, redis  # noqa: E402
from tests.peers.web import Peers  # noqa: E402
from tests.test_daemon import samples  # noqa: E402

LEAK_AGE = 2.0  # seconds: a server-side connection older than this outlived its run


@dataclass
class Sample:
    at: float
    rss_mb: float
    fds: int
    tasks: float
    runs: float
    skipped: float
    pg_leaked: int
    redis_leaked: int
    pg_open: int
    redis_open: int


def targets(peers: Peers, count: int, pg: postgres.PgServer, rd: redis.Process) -> list[str]:
    """YAML lines: 1 % PostgreSQL and 1 % Redis (at least 2 each), 10 % failing (closed ports, 2 MiB
    bodies, random bytes), 10 % flapping,
    8 % hanging, the rest ok (http, tcp, tls)."""
    per_db = max(2, count // 100)
    lines = [f"{{name: pg{i}, kind: postgres, dsn: '{pg.dsn('app')}'}}" for i in range(per_db)]
    lines += [f"{{name: redis{i}, kind: redis, url: '{rd.url()}'}}" for i in range(per_db)]
    plan = [("fail", count // 10), ("flap", count // 10), ("hang", count * 8 // 100)]
    plan.append(("ok", count - len(lines) - sum(n for _, n in plan)))
    for mix, number in plan:
        for i in range(number):
            name = f"{mix}{i}"
            if mix == "fail" and i % 4 == 2:  # a body far over the 1 MiB cap
                lines.append(f"{{name: {name}, kind: http, critical: false, url: '{peers.url('/huge')}'}}")
            elif mix == "fail" and i % 4 == 3:  # random bytes instead of HTTP
                lines.append(
                    f"{{name: {name}, kind: http, critical: false, url: 'http://{peers.address('garbage')}/'}}"
                )
            elif mix == "fail":
                lines.append(f"{{name: {name}, kind: tcp, critical: false, address: '{peers.address('closed')}'}}")
            elif mix == "flap":
                url = peers.url("/flap?period=7")
                lines.append(f"{{name: {name}, kind: http, url: '{url}', body_status_field: status}}")
            elif mix == "hang":
                kind = ("http", "tls")[i % 2]
                where = (
                    f"url: 'http://{peers.address('hang')}/'"
                    if kind == "http"
                    else (f"address: '{peers.address('tls-hang')}'")
                )
                lines.append(f"{{name: {name}, kind: {kind}, {where}}}")
            else:
                pick = i % 3
                if pick == 0:
                    lines.append(
                        f"{{name: {name}, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}"
                    )
                elif pick == 1:
                    lines.append(f"{{name: {name}, kind: tcp, address: '{peers.address('http')}'}}")
                else:
                    ca = peers.certs.ca_file
                    lines.append(
                        f"{{name: {name}, kind: tls, address: '{peers.address('tls-valid')}', server_name: localhost, "
                        f"ca_file: '{ca}'}}"
                    )
    return lines


def pg_connections(pg: postgres.PgServer) -> tuple[int, int]:
    rows = pg.sql(
        "SELECT count(*), count(*) FILTER (WHERE now() - backend_start > interval '2 seconds') "
        "FROM pg_stat_activity WHERE usename = 'app'"
    )
    total, old = rows.split("|")
    return int(total), int(old)


def redis_connections(rd: redis.Process) -> tuple[int, int]:
    with rd.client() as client:
        clients = [c for c in client.client_list() if c.get("cmd") != "client|list"]
    return len(clients), sum(1 for c in clients if int(c.get("age", 0)) >= LEAK_AGE)


def sample(daemon: Daemon, pg: postgres.PgServer, rd: redis.Process, started: float) -> Sample:
    pid = daemon.process.pid
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    found = samples(daemon.metrics())

    def total(name: str) -> float:
        return sum(v for (n, _), v in found.items() if n == name)

    pg_open, pg_old = pg_connections(pg)
    rd_open, rd_old = redis_connections(rd)
    return Sample(
        time.monotonic() - started,
        rss / 1024,
        fds,
        total("prober_event_loop_tasks"),
        total("prober_probes_total"),
        total("prober_skipped_runs_total"),
        pg_old,
        rd_old,
        pg_open,
        rd_open,
    )


def flat(values: list[float]) -> bool:
    """No trend: the median of the last third is within 10 % (or 10) of the first third's. Single samples
    move with the runs in flight at that moment; a leak shows as a steady climb."""
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return last - first <= max(10.0, 0.1 * first)


def judge(curve: list[Sample]) -> list[tuple[str, bool, str]]:
    warm = [s for s in curve if s.at >= curve[-1].at / 5] or curve
    growth = (warm[-1].rss_mb - warm[0].rss_mb) / warm[0].rss_mb
    return [
        (
            "RSS growth after warm-up < 10 %",
            growth < 0.10,
            f"{warm[0].rss_mb:.1f} -> {warm[-1].rss_mb:.1f} MB ({growth:+.1%})",
        ),
        (
            "open file descriptors flat",
            flat([s.fds for s in warm]),
            f"{min(s.fds for s in warm)}..{max(s.fds for s in warm)}",
        ),
        (
            "asyncio tasks flat",
            flat([s.tasks for s in warm]),
            f"{min(s.tasks for s in warm):.0f}..{max(s.tasks for s in warm):.0f}",
        ),
        (
            "no PostgreSQL connection outlives its run",
            max(s.pg_leaked for s in curve) == 0,
            f"older than {LEAK_AGE:g}s: max {max(s.pg_leaked for s in curve)}; "
            f"open at a sample: max {max(s.pg_open for s in curve)}",
        ),
        (
            "no Redis connection outlives its run",
            max(s.redis_leaked for s in curve) == 0,
            f"older than {LEAK_AGE:g}s: max {max(s.redis_leaked for s in curve)}; "
            f"open at a sample: max {max(s.redis_open for s in curve)}",
        ),
    ]


def table(curve: list[Sample]) -> list[str]:
    rows = [
        "| t (s) | RSS MB | fds | tasks | runs | skipped | pg open / >2s | redis open / >2s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in curve:
        rows.append(
            f"| {s.at:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.tasks:.0f} | {s.runs:.0f} | {s.skipped:.0f} | "
            f"{s.pg_open} / {s.pg_leaked} | {s.redis_open} / {s.redis_leaked} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--sample", type=float, default=60, help="seconds between samples")
    parser.add_argument("--out", type=Path, help="write the result here (markdown)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prober-soak-"))
    peers = Peers(work).start()
    pg = postgres.make_primary({"max_connections": "200"})
    servers = redis.Servers(work / "redis")
    daemon: Daemon | None = None
    try:
        rd = servers.server()
        config_lines = targets(peers, args.targets, pg, rd)
        config = work / "prober.yaml"
        config.write_text(
            "defaults: {interval: 1s, timeout: 500ms}\ntargets:\n" + "".join(f"  - {t}\n" for t in config_lines)
        )
        daemon = Daemon(config)
        started = time.monotonic()
        curve: list[Sample] = []
        print(f"soak: {len(config_lines)} targets every 1 s for {args.minutes:g} min, a sample every {args.sample:g} s")
        print(*table([])[:2], sep="\n")
        while True:
            curve.append(sample(daemon, pg, rd, started))
            print(table(curve)[-1], flush=True)
            if curve[-1].at >= args.minutes * 60:
                break
            time.sleep(max(0.0, min(args.sample, args.minutes * 60 - curve[-1].at)))
        verdicts = judge(curve)
    finally:
        code = daemon.stop() if daemon is not None else 1
        servers.stop_all()
        pg.destroy()
        peers.stop()
    print()
    for goal, met, figure in verdicts:
        print(f"{'met    ' if met else 'NOT MET'}  {goal}: {figure}")
    ok = all(met for _, met, _ in verdicts) and code == 0
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python scripts/soak.py", *sys.argv[1:]])
        report = [
            "# Soak result",
            "",
            f"Command: `{command}`  ",
            f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {args.targets} targets, "
            "interval 1 s, timeout 500 ms; "
            "daemon exit code " + str(code),
            "",
            "| goal | met | figure |",
            "|---|---|---|",
            *(f"| {goal} | {'yes' if met else 'no'} | {figure} |" for goal, met, figure in verdicts),
            "",
            *table(curve),
            "",
        ]
        args.out.write_text("\n".join(report))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
