"""The daemon: config -> scheduler -> probes -> board -> metrics and /status, with reloads on SIGHUP
or POST /-/reload and a graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import time
from collections.abc import Mapping

from aiohttp import web

from prober import config as config_module
from prober.config import Config
from prober.errors import ConfigError
from prober.history import History
from prober.metrics import LAG_BUCKETS, make_registry
from prober.models import split_address
from prober.probes import ProbeContext
from prober.redact import REDACTOR
from prober.scheduler import Scheduler
from prober.server import Api
from prober.shard import Shard
from prober.status import Board

log = logging.getLogger("prober")
STOP_GRACE = 3.0  # seconds the HTTP server gets to finish requests on shutdown


def _raise_fd_limit() -> None:
    """Thousands of concurrent probes need file descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


class Daemon:
    def __init__(
        self,
        cli_path: str | None,
        environ: Mapping[str, str] | None = None,
        listen: str | None = None,
        shard: Shard | None = None,
    ):
        self.cli_path = cli_path
        self.shard = shard
        self.environ = dict(os.environ if environ is None else environ)
        self.listen_override = listen
        self.board = Board(LAG_BUCKETS)
        self.history = History()  # recent runs and transitions for the page and the uptimes (memory only)
        self.ctx = ProbeContext()
        self.config: Config | None = None
        self.scheduler: Scheduler | None = None
        self.api: Api | None = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()

    def load(self) -> Config:
        """The config, keeping only this replica's share of the targets when sharded."""
        config = config_module.load(self.cli_path, self.environ)
        self.board.configured_targets = len(config.targets)
        if self.shard is None:
            return config
        mine = tuple(self.shard.select(config.targets))
        log.info("shard %s: probing %d of %d targets", self.shard, len(mine), len(config.targets))
        return dataclasses.replace(config, targets=mine)

    def _adopt(self, config: Config) -> None:
        REDACTOR.replace(config.secrets())
        self.config = config
        assert self.scheduler is not None
        self.scheduler.set_max_concurrency(config.max_concurrency)
        if self.board.set_duration_buckets(config.metrics.duration_buckets):
            log.info("run latency histograms use buckets %s", list(config.metrics.duration_buckets))
        self.scheduler.apply(config.targets)
        self.board.groups = dict(config.groups)
        self.board.reload_successful = True
        self.board.reload_success_time = time.time()
        if self.api is not None:
            self.api.settings = config.server
        for line in config_module.describe_targets(config):
            log.info("%s", line)
        if not config.targets:
            log.warning(
                "no targets configured (source: %s): pass -c FILE, set PROBER_CONFIG, or set DATABASE_URL, "
                "REDIS_URL, APP_READINESS_URL, ... for the zero-config default",
                config.source,
            )

    async def reload(self) -> list[str]:
        """Load the config again; a valid one is swapped in, an invalid one changes nothing."""
        async with self._reload_lock:
            try:
                config = self.load()
            except ConfigError as exc:
                self.board.reload_successful = False
                for problem in exc.problems:
                    log.error("reload rejected, the previous config keeps running: %s", problem)
                return exc.problems
            old = self.config
            self.ctx.forget_tls_contexts()
            self._adopt(config)
            if old is not None and old.server.listen != config.server.listen:
                log.warning("server.listen changed to %s: it takes effect after a restart", config.server.listen)
            log.info("config reloaded from %s: %d targets", config.source, len(config.targets))
            return []

    def liveness(self) -> str | None:
        """None if the event loop and scheduler run; else what is wrong (for /healthz)."""
        if self.scheduler is None or not self.scheduler.running:
            return "the scheduler is not running"
        if self.config is None:
            return None
        now = time.time()
        by_name = {t.name: t for t in self.config.targets}
        for name, status in self.board.targets.items():
            target = by_name.get(name)
            if target is None:
                continue
            allowance = 2 * target.interval + target.timeout + 5.0
            seen = status.last_run or self.board.reload_success_time or self.board.started
            if now - seen > allowance:
                return f"target {name} has not run for {now - seen:.0f}s (interval {target.interval:g}s)"
        return None

    def stop(self) -> None:
        self._stop.set()

    async def _drain(self) -> None:
        """Let cancelled runs unwind (closing their sockets) before the loop ends."""
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE)

    async def run(self, config: Config) -> int:
        _raise_fd_limit()
        self.scheduler = Scheduler(self.board, self.ctx, config.max_concurrency, self.history)
        registry = make_registry(self.board)
        self.api = Api(self.board, registry, config.server, self.reload, self.liveness, self.history)
        self._adopt(config)
        host, port = split_address(self.listen_override or config.server.listen)
        runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=STOP_GRACE)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            await runner.cleanup()
            await self.ctx.close()
            return 1
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        self.scheduler.start()
        log.info("prober listening on http://%s:%d (%d targets)", host, port, len(config.targets))
        await self._stop.wait()
        log.info("stopping: cancelling runs in flight")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        self.scheduler.shutdown()
        await runner.cleanup()
        await self._drain()
        await self.ctx.close()
        log.info("stopped")
        return 0
