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
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prober import config as config_module
from prober.config import Config
from prober.errors import ConfigError
from prober.history import History
from prober.logs import Throttled
from prober.metrics import LAG_BUCKETS, make_registry
from prober.models import split_address
from prober.probes import ProbeContext
from prober.redact import REDACTOR
from prober.scheduler import Scheduler
from prober.server import Api, serve
from prober.shard import Shard
from prober.status import Board

log = logging.getLogger("prober")
STOP_GRACE = 3.0  # seconds the HTTP server gets to finish requests on shutdown
LISTEN_BACKLOG = 512


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
        self._queued: asyncio.Future[list[str]] | None = None  # the reload that the next requests share
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="prober-reload")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_errors: dict[str, Throttled] = {}

    def load(self) -> Config:
        """The config, keeping only this replica's share of the targets when sharded."""
        config = config_module.load(self.cli_path, self.environ)
        self.board.configured_targets = len(config.targets)
        if self.shard is None:
            return config
        mine = tuple(self.shard.select(config.targets))
        log.info("shard %s: probing %d of %d targets", self.shard, len(mine), len(config.targets))
        return dataclasses.replace(config, targets=mine)

    def _prepare(self) -> tuple[Config, list[str]]:
        """A reload's work off the event loop (in the reload thread): load and validate, gather the
        secrets, and log the targets (masked) as start-up does."""
        config = self.load()
        secrets = config.secrets()
        for line in config_module.describe_targets(config):
            log.info("%s", line)
        return config, secrets

    def _adopt(self, config: Config, secrets: list[str] | None = None, described: bool = False) -> None:
        """Swap a loaded config in (on the event loop: only the swaps are done here)."""
        REDACTOR.replace(config.secrets() if secrets is None else secrets)
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
            self.api.configure(config.server)
        if not described:
            for line in config_module.describe_targets(config):
                log.info("%s", line)
        if not config.targets:  # a config without targets is refused when loaded: only a shard gets here
            log.warning(
                "shard %s: none of the %d targets of the config is this replica's",
                self.shard,
                self.board.configured_targets,
            )

    async def reload(self) -> list[str]:
        """Load the config again; a valid one is swapped in, an invalid one changes nothing.

        Reading and validating run in a thread of their own, off the event loop. Requests that come
        while a reload runs share the next one: a flood of them costs back-to-back reloads, no queue."""
        queued = self._queued
        if queued is not None:
            return await asyncio.shield(queued)
        queued = self._queued = asyncio.get_running_loop().create_future()
        try:
            async with self._reload_lock:
                self._queued = None  # requests from now on may see a newer file: they share a further reload
                problems = await self._reload_now()
        except BaseException:
            self._queued = None if self._queued is queued else self._queued
            queued.cancel()
            raise
        queued.set_result(problems)
        return problems

    async def _reload_now(self) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            config, secrets = await loop.run_in_executor(self._loader, self._prepare)
        except ConfigError as exc:
            self.board.reload_successful = False
            for problem in exc.problems:
                log.error("reload rejected, the previous config keeps running: %s", problem)
            return exc.problems
        except Exception as exc:  # a bug of ours: the old config keeps running, and the caller is told
            self.board.reload_successful = False
            log.exception("reload failed, the previous config keeps running")
            return [f"reload failed: internal error: {type(exc).__name__}"]
        old = self.config
        self.ctx.forget_tls_contexts()
        self._adopt(config, secrets, described=True)
        if old is not None and old.server.listen != config.server.listen:
            log.warning("server.listen changed to %s: it takes effect after a restart", config.server.listen)
        log.info("config reloaded from %s: %d targets", config.source, len(config.targets))
        return []

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's errors, one line per kind at most every 10 s (accept errors when descriptors
        run out come by the thousand a second): the first with its traceback, the rest counted."""
        message = str(context.get("message") or "event loop error")
        throttle = self._loop_errors.get(message)
        if throttle is None:
            if len(self._loop_errors) >= 100:
                self._loop_errors.clear()
            throttle = self._loop_errors[message] = Throttled(log, logging.ERROR)
        exc = context.get("exception")
        detail = f": {type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else ""
        first = throttle.count == 0
        # a traceback helps with a bug, not with a socket error (descriptors out, a peer gone)
        bug = isinstance(exc, BaseException) and not isinstance(exc, OSError)
        throttle(f"{message}{detail}", exc_info=exc if first and bug else None)

    def _reload_in_background(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        self.scheduler = Scheduler(self.board, self.ctx, config.max_concurrency, self.history)
        registry = make_registry(self.board)
        self.api = Api(self.board, registry, config.server, self.reload, self.liveness, self.history)
        self._adopt(config)
        host, port = split_address(self.listen_override or config.server.listen)
        try:
            listening = await serve(self.api, host, port, STOP_GRACE, LISTEN_BACKLOG)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
            await self._close()
            return 2 if isinstance(exc, socket.gaierror) else 1
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        self.scheduler.start()
        log.info("prober listening on http://%s:%d (%d targets)", host, port, len(config.targets))
        await self._stop.wait()
        log.info("stopping: cancelling runs in flight")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        self.scheduler.shutdown()
        await listening.close()
        await self._drain()
        await self._close()
        log.info("stopped")
        return 0

    async def _close(self) -> None:
        await self.ctx.close()
        if self.api is not None:
            self.api.renders.close()
        self._loader.shutdown(wait=False, cancel_futures=True)
