"""The command line: ``prober run``, ``prober check-config``, ``prober once`` and ``prober demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prober import __version__, logs
from prober.errors import ConfigError
from prober.redact import REDACTOR
from prober.status import Board, State

if TYPE_CHECKING:
    from prober.config import Config

# The drivers are imported only by the commands that probe: `prober healthcheck` (a container
# HEALTHCHECK, run every few seconds) stays light.

log = logging.getLogger("prober")
NAGIOS = {State.OK: 0, State.DEGRADED: 1, State.UNHEALTHY: 2, State.UNKNOWN: 3}
CONFIG_ERROR_EXIT = 2
UNKNOWN_EXIT = 3


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        help="config file (default: $PROBER_CONFIG, /etc/prober/prober.yaml, "
        "else targets from DATABASE_URL, REDIS_URL, APP_READINESS_URL, ...)",
    )
    common.add_argument(
        "--env-file",
        help="the application's dotenv file, read for zero-config and ${VAR} interpolation (default: "
        "$PROBER_ENV_FILE); variables of the process's own environment win",
    )
    common.add_argument("--log-format", choices=("text", "json"), default=os.environ.get("PROBER_LOG_FORMAT", "text"))
    common.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=os.environ.get("PROBER_LOG_LEVEL", "info")
    )
    parser = argparse.ArgumentParser(prog="prober", description="Dependency-health prober sidecar.")
    parser.add_argument("--version", action="version", version=f"prober {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", parents=[common], help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--listen", help="override server.listen (host:port)")
    run.add_argument(
        "--shard",
        help="probe only this replica's share of the targets: INDEX/COUNT (default: $PROBER_SHARD, "
        "or $PROBER_SHARD_INDEX (a number or a StatefulSet pod name) with $PROBER_SHARD_COUNT)",
    )
    commands.add_parser("check-config", parents=[common], help="validate the config; exit 0, or 2 with every problem")
    once = commands.add_parser(
        "once",
        parents=[common],
        help="probe every target once; exit 0 ok, 1 degraded, 2 unhealthy, 3 unknown/config error",
    )
    once.add_argument("--json", action="store_true", help="print the /status JSON instead of a table")
    once.add_argument("--group", help="probe only this health group's targets and exit by its state")
    demo = commands.add_parser("demo", parents=[common], help="start a sample application and probe it")
    demo.add_argument("--listen", default="127.0.0.1:9478", help="where the prober listens (default 127.0.0.1:9478)")
    health = commands.add_parser(
        "healthcheck",
        parents=[common],
        help="exit 0 if the local daemon's /healthz answers 200 (container HEALTHCHECK)",
    )
    health.add_argument("--url", default="http://127.0.0.1:9478/healthz")
    health.add_argument("--timeout", type=float, default=3.0)
    return parser


async def _healthcheck(url: str, limit: float) -> int:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session,
            session.get(url) as response,
        ):
            body = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(body.strip())
    return 0 if response.status == 200 else 1


def _print_problems(exc: ConfigError) -> None:
    print(f"config error ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {REDACTOR(problem)}", file=sys.stderr)


def _load(path: str | None) -> Config:
    from prober import config as config_module

    config = config_module.load(path)
    REDACTOR.replace(config.secrets())
    return config


def check_config(path: str | None) -> int:
    try:
        config = _load(path)
    except ConfigError as exc:
        _print_problems(exc)
        return CONFIG_ERROR_EXIT
    from prober.config import describe_targets

    print(f"{config.source}: OK, {len(config.targets)} target{'s' if len(config.targets) != 1 else ''}")
    for line in describe_targets(config):
        print(f"  {line}")
    return 0


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


async def _once(config: Config, group: str | None) -> Board:
    from prober.probes import ProbeContext
    from prober.runner import run_all

    chosen = set(config.groups[group]) if group is not None else None
    targets = [t for t in config.targets if chosen is None or t.name in chosen]
    ctx = ProbeContext()
    try:
        results = await run_all(targets, ctx, config.max_concurrency)
    finally:
        await ctx.close()
    board = Board()
    board.apply(targets)
    board.groups = {name: names for name, names in config.groups.items() if group is None or name == group}
    for target in targets:
        board.targets[target.name].record(results[target.name], 1, 1)
    return board


def once(path: str | None, as_json: bool, group: str | None = None) -> int:
    try:
        config = _load(path)
    except ConfigError as exc:
        _print_problems(exc)
        return UNKNOWN_EXIT
    if group is not None and group not in config.groups:
        known = ", ".join(config.groups) or "none configured"
        print(f"--group: no health group {group!r} in {config.source} (groups: {known})", file=sys.stderr)
        return UNKNOWN_EXIT
    from prober.server import check_json, iso, status_json

    board = asyncio.run(_once(config, group))
    overall = board.group_state(group) if group is not None else board.overall()
    if as_json:
        print(json.dumps(status_json(board, group), indent=2))
    else:
        rows = [["TARGET", "KIND", "CRITICAL", "STATUS", "LATENCY", "REASON", "MESSAGE"]]
        for name, status in board.targets.items():
            check = check_json(status)
            latency = f"{check['latency_ms']:.1f}ms" if check["latency_ms"] is not None else "-"
            rows.append(
                [
                    name,
                    status.kind,
                    "yes" if status.critical else "no",
                    status.state.value,
                    latency,
                    check["reason"] or "-",
                    check["message"],
                ]
            )
        print(_table(rows))
        whole = f"group {group}" if group is not None else "overall"
        print(f"\n{whole}: {overall.value} ({iso(board.started)})")
    if overall is State.UNHEALTHY:
        return NAGIOS[State.UNHEALTHY]
    if any(t.state is State.UNKNOWN for t in board.targets.values()) or overall is State.UNKNOWN:
        return UNKNOWN_EXIT
    return NAGIOS[overall]


def run(path: str | None, listen: str | None, shard_spec: str | None) -> int:
    from prober import shard
    from prober.daemon import Daemon

    try:
        chosen = shard.parse(shard_spec) if shard_spec else shard.from_environment(os.environ)
    except ValueError as exc:
        print(f"--shard: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    if listen is not None:
        from prober.models import split_address

        try:
            split_address(listen)
        except ValueError as exc:
            print(f"--listen: {exc}", file=sys.stderr)
            return CONFIG_ERROR_EXIT
    daemon = Daemon(path, listen=listen, shard=chosen)
    try:
        config = daemon.load()
    except ConfigError as exc:
        _print_problems(exc)
        return CONFIG_ERROR_EXIT
    log.info("prober %s starting with config from %s", __version__, config.source)
    if os.environ.get("PROBER_UVLOOP") == "1":  # opt-in: pip install 'prober[uvloop]'
        import uvloop

        return uvloop.run(daemon.run(config))
    return asyncio.run(daemon.run(config))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    if getattr(args, "env_file", None):
        os.environ["PROBER_ENV_FILE"] = args.env_file  # read by the config loader, again on every reload
    try:
        if args.command == "check-config":
            return check_config(args.config)
        if args.command == "once":
            return once(args.config, args.json, args.group)
        if args.command == "demo":
            from prober.demo import demo

            return demo(args.listen)
        if args.command == "healthcheck":
            return asyncio.run(_healthcheck(args.url, args.timeout))
        return run(args.config, args.listen, args.shard)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
