"""The clients of the websocket and grpc kinds, chosen by measurement, and the cost of a run of each new kind
(websocket, websocket with ``protocol: socketio``, grpc, dns) beside postgres and redis.

    .venv/bin/python -m bench.kinds            # both parts, about 3 minutes; writes bench/KINDS.md
    .venv/bin/python -m bench.kinds --only choice

1. **choice**: for each candidate client, the memory its first import adds to a process that already runs the
   prober's daemon modules (a fresh interpreter per candidate: VmRSS after ``import prober.daemon`` and after
   importing the candidate), and this process's CPU per probe (user+system, every thread) for N probes at
   concurrency 10, each on a fresh connection, against a peer in another process:
   * WebSocket: open, one ping and its pong, close: aiohttp's ``ws_connect`` (aiohttp is loaded anyway) vs
     ``websockets`` (its asyncio client); and for Socket.IO, python-socketio's own ``AsyncClient`` (websocket
     transport, namespace ``/``) as the reference for a hand-written Engine.IO exchange.
   * gRPC: ``grpc.health.v1.Health/Check``: grpclib (asyncio, pure Python over h2) vs grpcio's aio API.
2. **runs**: the daemon (``python -m prober run``) with 5 targets of one kind at 1 s, one process per kind,
   against real peers on loopback (PostgreSQL 15, Redis 7, the python-socketio/aiohttp application of
   tests/peers/realtime.py, a grpcio health server, dnsmasq): CPU per run from /proc and wall time per run
   from the ``prober_probe_duration_seconds`` histogram, as bench.run measures the dependency probes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.servers import ROOT, Postgres, Prober, Redis, Stack, free_port, parse_metrics, wait_port

CONCURRENCY = 10
OUT = ROOT / "bench" / "KINDS.md"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_probe(count: int, one: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(CPU ms per probe, wall ms per probe) for ``count`` probes at CONCURRENCY, after a warm-up."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded() -> None:
        async with gate:
            await one()

    await asyncio.gather(*(guarded() for _ in range(30)))
    started_cpu, started = cpu(), time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(count)))
    return (cpu() - started_cpu) / count * 1000, (time.perf_counter() - started) / count * 1000


IMPORT_SCRIPT = """
import sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import prober.daemon, prober.probes
before = rss()
exec(sys.argv[1])
print(rss() - before)
"""

IMPORTS = {
    "aiohttp ws_connect": "import aiohttp",
    "websockets": "import websockets.asyncio.client",
    "python-socketio AsyncClient": "import socketio",
    "grpclib": "import grpclib.client\nfrom grpclib.health.v1 import health_pb2, health_grpc",
    "grpcio aio": "import grpc, grpc.aio\nfrom grpc_health.v1 import health_pb2, health_pb2_grpc",
    "dnspython (dns.asyncquery, dns.resolver)": "import dns.asyncquery, dns.message, dns.resolver",
    "the grpc kind (grpclib, h2, protobuf, its health messages)": "from prober.probes import grpc\ngrpc._messages()\n"
    "grpc._channel_class()",
}


def import_mb(statement: str) -> float:
    """MB of RSS the statement adds, median of three fresh interpreters."""
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_SCRIPT, statement], capture_output=True, text=True, cwd=ROOT, check=True
        )
        runs.append(float(out.stdout.strip()))
    return sorted(runs)[1]


def start_peer(stack: Stack, module: str, *args: str) -> int:
    port = free_port()
    stack.start([sys.executable, "-m", module, str(port), *args], module.rsplit(".", 1)[1])
    wait_port(port)
    return port


async def websocket_choice(port: int, count: int) -> list[list[str]]:
    import aiohttp
    import socketio
    import websockets.asyncio.client

    url = f"ws://127.0.0.1:{port}/ws/echo"

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as session:

        async def with_aiohttp() -> None:
            async with session.ws_connect(url, autoping=False, max_msg_size=1 << 20) as ws:
                await ws.ping()
                message = await ws.receive(timeout=2)
                assert message.type is aiohttp.WSMsgType.PONG, message

        async def with_websockets() -> None:
            async with websockets.asyncio.client.connect(
                url, ping_interval=None, max_size=1 << 20, compression=None
            ) as ws:
                await asyncio.wait_for(await ws.ping(), 2)

        async def with_socketio() -> None:
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=2)
            await client.disconnect()

        from prober.probes import ProbeContext
        from prober.probes.websocket import WebsocketTarget
        from prober.runner import run_probe

        ctx = ProbeContext()
        plain = WebsocketTarget(name="b", kind="websocket", url=url)
        sio = WebsocketTarget(name="b", kind="websocket", url=f"ws://127.0.0.1:{port}", protocol="socketio")

        async def with_prober() -> None:
            result = await run_probe(plain, ctx)
            assert result.state.value == "ok", result.message

        async def with_prober_socketio() -> None:
            result = await run_probe(sio, ctx)
            assert result.state.value == "ok", result.message

        rows = []
        for name, one in (
            ("prober websocket probe (aiohttp parts, with the runner)", with_prober),
            ("aiohttp ws_connect", with_aiohttp),
            ("websockets", with_websockets),
            ("prober websocket probe, protocol: socketio", with_prober_socketio),
            ("python-socketio AsyncClient", with_socketio),
        ):
            cpu_ms, wall_ms = await per_probe(count, one)
            rows.append([name, f"{cpu_ms:.3f}", f"{wall_ms:.3f}"])
            print(f"  {name:<30} {cpu_ms:6.3f} ms CPU/probe", file=sys.stderr)
    return rows


async def grpc_client(client: str, port: int, count: int) -> tuple[float, float]:
    """CPU and wall ms per Health/Check with one client. grpclib and grpcio-health-checking both register
    ``grpc.health.v1`` in protobuf's default descriptor pool, so each client runs in a process of its own."""
    if client == "grpclib":
        import grpclib.client
        from grpclib.health.v1 import health_grpc, health_pb2

        async def one() -> None:
            channel = grpclib.client.Channel("127.0.0.1", port)
            try:
                request = health_pb2.HealthCheckRequest(service="")
                reply = await health_grpc.HealthStub(channel).Check(request, timeout=2)
                assert reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING
            finally:
                channel.close()

    elif client == "prober grpc probe (grpclib, with the runner)":
        from prober.probes import ProbeContext
        from prober.probes.grpc import GrpcTarget
        from prober.runner import run_probe

        ctx = ProbeContext()
        target = GrpcTarget(name="b", kind="grpc", address=f"127.0.0.1:{port}")

        async def one() -> None:
            result = await run_probe(target, ctx)
            assert result.state.value == "ok", result.message

    else:
        import grpc
        from grpc_health.v1 import health_pb2 as grpcio_pb2
        from grpc_health.v1 import health_pb2_grpc

        async def one() -> None:
            # a fresh connection per run: grpc core otherwise shares subchannels (connections) between channels
            options = [("grpc.use_local_subchannel_pool", 1)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
                request = grpcio_pb2.HealthCheckRequest(service="")
                reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=2)
                assert reply.status == grpcio_pb2.HealthCheckResponse.SERVING

    return await per_probe(count, one)


def grpc_choice(port: int, count: int) -> list[list[str]]:
    rows = []
    for name in ("prober grpc probe (grpclib, with the runner)", "grpclib", "grpcio aio"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.kinds", "--grpc-client", name, "--port", str(port), "--count", str(count)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        cpu_ms, wall_ms = json.loads(out.stdout)
        rows.append([name, f"{cpu_ms:.3f}", f"{wall_ms:.3f}"])
        print(f"  {name:<30} {cpu_ms:6.3f} ms CPU/probe", file=sys.stderr)
    return rows


def choice(stack: Stack, count: int) -> dict[str, Any]:
    memory = {name: import_mb(statement) for name, statement in IMPORTS.items()}
    ws_port = start_peer(stack, "tests.peers.realtime")
    grpc_port = start_peer(stack, "tests.peers.grpc_health")
    websocket = asyncio.run(websocket_choice(ws_port, count))
    grpc = grpc_choice(grpc_port, count)
    return {"memory": memory, "websocket": websocket, "grpc": grpc}


# --- 2. runs ----------------------------------------------------------------------------------------


class Dnsmasq:
    def __init__(self, stack: Stack) -> None:
        hosts = stack.dir / "dns-hosts"
        hosts.write_text("127.0.0.10 app.bench.test\n")
        self.port = free_port()
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        argv = [binary, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces"]
        argv += ["--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--user=root", "--pid-file="]
        stack.start(argv, "dnsmasq")
        time.sleep(0.3)


def run_cost(stack: Stack, kind: str, targets: list[dict[str, Any]], window: float) -> dict[str, Any]:
    prober = Prober(stack, targets, name=f"prober-{kind}")
    prober.wait_ready()
    time.sleep(2)
    names = {"prober_probe_duration_seconds_sum", "prober_probe_duration_seconds_count"}
    cpu0, h0 = prober.proc.cpu(), parse_metrics(prober.metrics()[0], names)
    time.sleep(window)
    cpu1, h1 = prober.proc.cpu(), parse_metrics(prober.metrics()[0], names)
    runs = sum(v for _, v in h1["prober_probe_duration_seconds_count"]) - sum(
        v for _, v in h0["prober_probe_duration_seconds_count"]
    )
    seconds = sum(v for _, v in h1["prober_probe_duration_seconds_sum"]) - sum(
        v for _, v in h0["prober_probe_duration_seconds_sum"]
    )
    states = sorted({c["status"] for c in prober.status()["checks"].values()})
    rss = prober.proc.rss()
    stack.stop(prober.proc)
    return {
        "runs": runs,
        "cpu_ms": (cpu1 - cpu0) / max(1, runs) * 1000,
        "wall_ms": seconds / max(1, runs) * 1000,
        "rss_mb": rss,
        "states": states,
    }


def runs(stack: Stack, window: float) -> dict[str, Any]:
    count = 5
    common = {"interval": "1s", "timeout": "900ms"}
    pg, redis, dns = Postgres(stack), Redis(stack), Dnsmasq(stack)
    ws_port = start_peer(stack, "tests.peers.realtime")
    grpc_port = start_peer(stack, "tests.peers.grpc_health")
    kinds: dict[str, list[dict[str, Any]]] = {
        "postgres": [{"kind": "postgres", "dsn": pg.dsn}],
        "redis": [{"kind": "redis", "url": redis.url}],
        "websocket": [{"kind": "websocket", "url": f"ws://127.0.0.1:{ws_port}/ws/echo"}],
        "websocket (socketio)": [{"kind": "websocket", "url": f"ws://127.0.0.1:{ws_port}", "protocol": "socketio"}],
        "grpc": [{"kind": "grpc", "address": f"127.0.0.1:{grpc_port}"}],
        "dns": [{"kind": "dns", "query_name": "app.bench.test", "server": f"127.0.0.1:{dns.port}"}],
    }
    out = {}
    try:
        for kind, (fields,) in kinds.items():
            targets = [{"name": f"t{i}", **fields, **common} for i in range(count)]
            out[kind] = run_cost(stack, kind.split()[0], targets, window)
            print(f"  {kind:<22} {out[kind]['cpu_ms']:6.2f} ms CPU/run", file=sys.stderr)
    finally:
        pg.stop()
    return out


# --- the report ---------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    head = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    return "\n".join([head, "|" + "|".join("-" * (w + 2) for w in widths) + "|", *lines])


def report(data: dict[str, Any], command: str) -> str:
    parts = [
        "# The new kinds: client choice and cost per run",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {data['machine']}. Absolute times on this shared, noisy 2-core machine are context; compare "
        "rows measured in the same run.",
        "",
    ]
    if "choice" in data:
        choice_data = data["choice"]
        count = choice_data["count"]
        parts += [
            f"## 1. Client choice ({count} probes per client, concurrency {CONCURRENCY}, fresh connection each)",
            "",
            "Memory a first import adds to a process that already holds the daemon's modules (median of 3):",
            "",
            table(["client", "import MB"], [[k, f"{v:.1f}"] for k, v in choice_data["memory"].items()]),
            "",
            "WebSocket: open, ping, pong, close (peer: tests/peers/realtime.py, `/ws/echo`; python-socketio's "
            "client opens Socket.IO's namespace `/` instead of pinging):",
            "",
            table(["client", "CPU ms/probe", "wall ms/probe"], choice_data["websocket"]),
            "",
            "gRPC: one `grpc.health.v1.Health/Check` (peer: grpcio server with grpcio-health-checking's servicer):",
            "",
            table(["client", "CPU ms/probe", "wall ms/probe"], choice_data["grpc"]),
            "",
        ]
    if "runs" in data:
        rows = [
            [
                k,
                f"{v['runs']:.0f}",
                f"{v['cpu_ms']:.2f}",
                f"{v['wall_ms']:.2f}",
                f"{v['rss_mb']:.0f}",
                ",".join(v["states"]),
            ]
            for k, v in data["runs"].items()
        ]
        parts += [
            f"## 2. Cost per run (the daemon, 5 targets at 1 s, {data['window']:g} s window, one process per kind)",
            "",
            table(["kind", "runs", "CPU ms/run", "wall ms/run (mean)", "RSS MB", "state"], rows),
            "",
        ]
    parts += [
        "<details><summary>raw data (JSON)</summary>",
        "",
        "```json",
        json.dumps(data, indent=1),
        "```",
        "</details>",
        "",
    ]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="choice,runs")
    parser.add_argument("--count", type=int, default=1000, help="probes per client in the choice part")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per kind in the runs part")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--grpc-client", help=argparse.SUPPRESS)  # one gRPC client, in its own process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.grpc_client:
        print(json.dumps(asyncio.run(grpc_client(args.grpc_client, args.port, args.count))))
        return 0
    parts = set(args.only.split(","))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    data: dict[str, Any] = {
        "machine": f"{subprocess.run(['nproc'], capture_output=True, text=True, check=False).stdout.strip()} CPUs, "
        f"Python {platform.python_version()}, load {load}, "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "window": args.window,
    }
    stack = Stack()
    try:
        if "choice" in parts:
            print("client choice", file=sys.stderr)
            data["choice"] = {"count": args.count, **choice(stack, args.count)}
        if "runs" in parts:
            print("cost per run", file=sys.stderr)
            data["runs"] = runs(stack, args.window)
    finally:
        stack.close()
    command = ".venv/bin/python -m bench.kinds" + ("" if parts == {"choice", "runs"} else f" --only {args.only}")
    text = report(data, command)
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
