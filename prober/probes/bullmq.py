"""``bullmq``: BullMQ job queues on Redis: jobs wait, are worked on, fail, and a worker is there to take them.

It connects exactly as the ``redis`` kind does (the same URL forms, Sentinel discovery, TLS, secrets and one
fresh connection per run: :func:`prober.probes.redis.locate` and :func:`~prober.probes.redis.connected`),
then reads each queue in two pipelined round trips of constant cost, whatever the queue holds:

1. ``INFO`` (version, role, ``maxmemory_policy``), ``CLIENT LIST`` (the workers) and, per queue, the
   lengths of its lists and sorted sets (``LLEN``, ``ZCARD``: O(1)), whether it is paused (``HGET meta
   paused``), the job next in line (``LINDEX wait -1``, ``ZRANGE prioritized 0 0``), the newest failure
   (``ZRANGE failed -1 -1 WITHSCORES``) and the failures since the previous run (``ZCOUNT``: O(log n));
2. ``HMGET`` of the jobs next in line (``timestamp``, ``delay``, ``processedOn``): their age.

No job key is ever scanned or listed. With ``queues: all`` the queues are found from their ``<prefix>:*:meta``
keys with ``SCAN``: at most :data:`SCAN_CALLS` calls of ``COUNT`` :data:`SCAN_COUNT` per run, continued on
the next run where a large keyspace needs more, then again every :data:`RESCAN_AFTER` seconds.

The key layout, the client names of workers and the scores of the failed set are BullMQ's (the Node library
and its Python port share the Lua scripts): ``<prefix>:<queue>:wait`` (a list, the oldest job at its tail),
``:prioritized``, ``:delayed``, ``:failed`` and ``:completed`` (sorted sets; failed and completed scored by
``finishedOn``), ``:active`` (a list), ``:waiting-children`` (a sorted set), ``:meta`` (a hash; ``paused``)
and ``:paused`` (the list paused jobs were moved to before BullMQ 5). Workers name their connections
``<prefix>:<base64(queue)>[:w:<name>]`` (Node) or ``<prefix>:<queue>[:w:<name>]`` (Python), and
``Queue.getWorkers()`` counts the ``CLIENT LIST`` entries with those names: so does this probe.

``failed_delta`` compares this run with the previous one, whose marks are kept in the process's memory
(:meth:`ProbeContext.memory`, dropped when the target is removed or its config changes): BullMQ's own failure
counter (``<queue>:metrics:failed`` ``count``) where workers collect metrics, exact whatever ``removeOnFail``
removes; else the failed jobs scored (``finishedOn``) after the newest failure the previous run saw. The latter
is not fooled by a set that ``removeOnFail`` keeps at a constant size (a difference of sizes would say 0), but
cannot count failed jobs removed before the run sees them. The first run counts one interval's failures.

redis-py is imported on first use (through the redis kind), so a config without these kinds does not load it.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import PlainValidator, StringConstraints

from prober.errors import ProbeFailure, Words, describe, driver_errors
from prober.judge import Observable, Observation, Rule, above, degraded_if, unhealthy_if
from prober.models import Duration, format_duration
from prober.probes import redis as redis_kind
from prober.probes._context import ProbeContext
from prober.probes._kit import Run, config_duration, human_duration
from prober.status import Reason

if TYPE_CHECKING:
    from redis.asyncio.connection import Connection

MAX_QUEUES = 50  # queues per target: in the config, found by queues: all, and so in the metrics
MAX_NAME = 200  # characters of a queue name (a label value)
SCAN_CALLS = 10  # SCAN calls per run while queues: all looks for queues ...
SCAN_COUNT = 1000  # ... each asking Redis to look at about this many keys
RESCAN_AFTER = 300.0  # seconds between two complete discoveries
STATES = ("waiting", "active", "delayed", "failed", "completed", "waiting_children")
LEGACY_MARKER = "0:"  # a marker BullMQ < 5 left at the tail of the wait list (its getCounts skips it)


Prefix = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]


def _check_queues(value: Any) -> list[str] | Literal["all"]:
    """``all``, or a list of 1 to MAX_QUEUES distinct queue names (one validator: one clear message)."""
    if value == "all":
        return "all"
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a list of queue names ([email, thumbnails]) or all, got {value!r}")
    if len(value) > MAX_QUEUES:
        raise ValueError(f"at most {MAX_QUEUES} queues per target, got {len(value)}")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ValueError(f"queues[{index}]: expected a queue name, got {name!r}")
        if ":" in name:
            raise ValueError(
                f"queues[{index}]: a BullMQ queue name cannot contain ':' (BullMQ refuses it), got {name!r}"
            )
    if len(set(value)) != len(value):
        raise ValueError("a queue is named twice")
    return list(value)


Queues = Annotated[list[str] | Literal["all"], PlainValidator(_check_queues)]


class BullmqTarget(redis_kind.RedisTarget):
    """The redis kind's fields (url, password, sentinels, master_name, sentinel_password, ca_file,
    max_memory_usage), and the queues."""

    kind: Literal["bullmq"]  # type: ignore[assignment]  # a kind of its own, with the redis kind's connection
    queues: Queues
    prefix: Prefix = "bull"
    max_wait: Duration = 300.0

    def where(self) -> str:
        shown = "all queues" if self.queues == "all" else f"queues {', '.join(self.queues)}"
        return f"{super().where()} ({shown}, prefix {self.prefix})"


MODEL = BullmqTarget
# bytes one run may receive (_budget.py): INFO, CLIENT LIST, a few counters and jobs per queue (50 at most)
BYTE_BUDGET = 4 * 2**20

WORDS: tuple[Words, ...] = ()
classify = redis_kind.classify


# --- reading the queues ---------------------------------------------------------------------------


async def _pipeline(conn: Connection, commands: Sequence[tuple[str, ...]]) -> list[Any]:
    """Send every command at once, then read every reply: an error reply is returned (as redis-py's
    ResponseError) in its place, so one refused command does not hide the others' answers."""
    from redis.exceptions import BusyLoadingError, ResponseError

    if not commands:
        return []
    replies: list[Any] = []
    with driver_errors(classify):
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                if isinstance(exc, BusyLoadingError):  # the server is not serving: the whole run fails
                    raise
                replies.append(exc)
    return replies


def _queue_commands(key: str, since: float) -> list[tuple[str, ...]]:
    """One queue's commands, in the order :func:`_read_queue` reads their replies."""
    return [
        ("LLEN", f"{key}:wait"),
        ("LLEN", f"{key}:paused"),
        ("ZCARD", f"{key}:prioritized"),
        ("LLEN", f"{key}:active"),
        ("ZCARD", f"{key}:delayed"),
        ("ZCARD", f"{key}:failed"),
        ("ZCARD", f"{key}:completed"),
        ("ZCARD", f"{key}:waiting-children"),
        ("HGET", f"{key}:meta", "paused"),
        ("EXISTS", f"{key}:meta"),
        ("LINDEX", f"{key}:wait", "-1"),
        ("LINDEX", f"{key}:paused", "-1"),
        ("ZRANGE", f"{key}:prioritized", "0", "0"),
        ("ZRANGE", f"{key}:failed", "-1", "-1", "WITHSCORES"),
        ("ZCOUNT", f"{key}:failed", f"({since:.0f}", "+inf"),
        ("HGET", f"{key}:metrics:failed", "count"),
    ]


def _failure_of(reply: Any, command: tuple[str, ...]) -> ProbeFailure | None:
    from redis.exceptions import ResponseError

    if not isinstance(reply, ResponseError):
        return None
    text = describe(reply)
    if text.startswith("WRONGTYPE"):
        return ProbeFailure(
            Reason.ASSERTION, f"{command[1]} is not the {command[0]} type BullMQ uses: not a BullMQ queue? ({text})"
        )
    if text.startswith(("MOVED", "ASK")):
        return ProbeFailure(
            Reason.PROTOCOL,
            f"{command[1]} lives on another Redis Cluster node ({text}): point the url at the node that holds the "
            "queue's hash slot",
        )
    return classify(reply) or ProbeFailure(Reason.PROTOCOL, f"error reply to {command[0]} {command[1]}: {text}")


def _int(reply: Any) -> int:
    if isinstance(reply, int) and not isinstance(reply, bool):
        return reply
    raise ProbeFailure(Reason.PROTOCOL, f"unexpected reply {str(reply)[:40]!r} where Redis sends a number")


@dataclass(frozen=True, slots=True)
class _Mark:
    """What a run remembers of a queue for the next: the newest failure's score, BullMQ's failure count."""

    score: float
    total: int | None


@dataclass(slots=True)
class _Queue:
    """What one run read of one queue."""

    name: str
    counts: dict[str, int]
    paused: bool
    known: bool
    next_ids: list[str]  # the jobs next in line: the wait list's tail, the paused list's, the first prioritized
    newest_failure: float | None  # the finishedOn score of the newest failed job
    failed_since: int  # failed jobs scored after the previous run's mark
    failed_total: int | None  # BullMQ's own count of failures (metrics:failed), when workers collect metrics
    marker: bool = False  # a legacy marker at the wait list's tail (not a job)
    oldest_age: float | None = None
    workers: int | None = None


def _read_queue(name: str, replies: Sequence[Any], commands: Sequence[tuple[str, ...]]) -> _Queue:
    for reply, command in zip(replies, commands, strict=True):
        failure = _failure_of(reply, command)
        if failure is not None:
            raise failure
    wait, legacy_paused, prioritized, active, delayed, failed, completed, children = map(_int, replies[:8])
    paused_flag, meta_exists, wait_tail, paused_tail, first_prioritized, newest_failed, since, total = replies[8:]
    marker = isinstance(wait_tail, str) and wait_tail.startswith(LEGACY_MARKER)
    next_ids = [
        job
        for job in (wait_tail, paused_tail, *(first_prioritized if isinstance(first_prioritized, list) else []))
        if isinstance(job, str) and not job.startswith(LEGACY_MARKER)
    ]
    newest: float | None = None
    if isinstance(newest_failed, list) and len(newest_failed) == 2:
        try:
            newest = float(newest_failed[1])
        except ValueError:
            raise ProbeFailure(Reason.PROTOCOL, f"unexpected score in {commands[13][1]}") from None
    counts = {
        "waiting": wait - (1 if marker else 0) + legacy_paused + prioritized,
        "active": active,
        "delayed": delayed,
        "failed": failed,
        "completed": completed,
        "waiting_children": children,
    }
    failed_total = int(total) if isinstance(total, str) and total.isdigit() else None
    return _Queue(
        name, counts, paused_flag == "1", _int(meta_exists) == 1, next_ids, newest, _int(since), failed_total, marker
    )


def _waiting_since(fields: Any) -> float | None:
    """When a job became due (ms): its creation plus its delay, or the start of its last attempt if later
    (a retried job). None for a job whose hash is gone."""
    if not isinstance(fields, list) or len(fields) != 3 or fields[0] is None:
        return None
    try:
        created = float(fields[0]) + float(fields[1] or 0)
        return max(created, float(fields[2] or 0))
    except ValueError:
        return None


_B64_NAME = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def _worker_names(prefix: str, queue: str) -> tuple[str, ...]:
    """The client names BullMQ's workers of a queue give their connections: Node's (base64 of the name)
    and the Python port's (the name as it is)."""
    return (f"{prefix}:{base64.b64encode(queue.encode()).decode()}", f"{prefix}:{queue}")


def _count_workers(client_list: str, prefix: str, queues: Sequence[str]) -> dict[str, int]:
    """``CLIENT LIST`` -> connections per queue, matched as ``Queue.getWorkers()`` matches them: a name
    equal to the queue's client name, or starting with it followed by ``:w:``."""
    wanted: dict[str, str] = {}
    for queue in queues:
        for name in _worker_names(prefix, queue):
            wanted.setdefault(name, queue)
    found = dict.fromkeys(queues, 0)
    for line in client_list.splitlines():
        name = next((part[5:] for part in line.split(" ") if part.startswith("name=")), "")
        if not name:
            continue
        owner = wanted.get(name)
        at = name.find(":w:")
        while owner is None and at > 0:  # a named worker: the queue's client name, then ":w:<name>"
            owner = wanted.get(name[:at])
            at = name.find(":w:", at + 1)
        if owner is not None:
            found[owner] += 1
    return found


# --- discovery (queues: all) ----------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


@dataclass(slots=True)
class _Discovery:
    """Kept between runs in the target's memory: the queues found by the last complete SCAN cycle and the
    cycle under way."""

    known: list[str] = field(default_factory=list)
    complete: bool = False
    cursor: int = 0
    seen: set[str] = field(default_factory=set)
    scanning: bool = True
    finished_at: float = 0.0
    keys_seen: int = 0


async def _discover(conn: Connection, target: BullmqTarget, memory: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    found: _Discovery = memory.setdefault("discovery", _Discovery())
    now = time.monotonic()
    if not found.scanning and now - found.finished_at >= RESCAN_AFTER:
        found.scanning, found.cursor, found.seen = True, 0, set()
    calls = 0
    if found.scanning:
        pattern = f"{_glob_escape(target.prefix)}:*:meta"
        head, tail = len(target.prefix) + 1, -len(":meta")
        while calls < SCAN_CALLS:
            command = ("SCAN", str(found.cursor), "MATCH", pattern, "COUNT", str(SCAN_COUNT))
            (reply,) = await _pipeline(conn, [command])
            calls += 1
            failure = _failure_of(reply, command)
            if failure is not None:
                raise failure
            if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
                raise ProbeFailure(Reason.PROTOCOL, "unexpected SCAN reply")
            if not (isinstance(reply[0], str) and reply[0].isdigit()):
                raise ProbeFailure(Reason.PROTOCOL, "unexpected SCAN cursor")
            found.cursor = int(reply[0])
            for key in reply[1]:
                name = key[head:tail] if isinstance(key, str) else ""
                if name and ":" not in name and len(name) <= MAX_NAME:  # BullMQ's names; the key is data
                    found.seen.add(name)
            if found.cursor == 0:
                found.known, found.complete, found.scanning = sorted(found.seen), True, False
                found.finished_at, found.seen = now, set()
                break
    everything = sorted(set(found.known) | found.seen)
    details: dict[str, Any] = {
        "complete": found.complete and not found.scanning,
        "queues_found": len(everything),
        "scan_calls": calls,
    }
    if len(everything) > MAX_QUEUES:
        details["capped"] = f"{len(everything)} queues found, the first {MAX_QUEUES} (by name) are read"
    if found.scanning:
        details["note"] = (
            f"discovery under way: SCAN continues next run ({SCAN_CALLS} calls of COUNT {SCAN_COUNT} per run); "
            "name the queues for a large keyspace"
        )
    return everything[:MAX_QUEUES], details


# --- the run ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Facts:
    info: dict[str, str]
    queues: list[_Queue]
    workers_note: str | None = None
    discovery: dict[str, Any] | None = None


async def _read(
    conn: Connection, target: BullmqTarget, ctx: ProbeContext, run: Run, step: redis_kind.Step, where: str
) -> _Facts:
    from redis.exceptions import NoPermissionError, ResponseError

    memory = ctx.memory(target)
    discovery: dict[str, Any] | None = None
    if target.queues == "all":
        step.now = f"discovering queues on {where}"
        with run.phase("discover"):
            names, discovery = await _discover(conn, target, memory)
    else:
        names = list(target.queues)
    marks: dict[str, _Mark] = memory.setdefault("failed_marks", {})
    first = (time.time() - target.interval) * 1000  # the first run counts one interval's failures
    step.now = f"waiting for the queue counts of {where}"
    with run.phase("query"):
        commands: list[tuple[str, ...]] = [("INFO",), ("CLIENT", "LIST")]
        for name in names:
            commands += _queue_commands(f"{target.prefix}:{name}", marks[name].score if name in marks else first)
        replies = await _pipeline(conn, commands)
        info_reply, clients = replies[0], replies[1]
        if not isinstance(info_reply, str):
            raise _failure_of(info_reply, ("INFO", "")) or ProbeFailure(Reason.PROTOCOL, "unexpected INFO reply")
        info = redis_kind.parse_info(info_reply)
        queues = []
        per = len(_queue_commands("", 0))
        for index, name in enumerate(names):
            start = 2 + index * per
            queues.append(_read_queue(name, replies[start : start + per], commands[start : start + per]))
        step.now = f"waiting for the ages of the jobs next in line on {where}"
        lookups = [(q, job) for q in queues for job in q.next_ids]
        ages = await _pipeline(
            conn,
            [("HMGET", f"{target.prefix}:{q.name}:{job}", "timestamp", "delay", "processedOn") for q, job in lookups],
        )
    now_ms = time.time() * 1000
    for (queue, _job), reply in zip(lookups, ages, strict=True):
        since = _waiting_since(reply)
        if since is not None:
            age = max(0.0, (now_ms - since) / 1000)
            queue.oldest_age = age if queue.oldest_age is None else max(queue.oldest_age, age)
    for queue in queues:
        before = marks.get(queue.name)
        if before is not None and before.total is not None and queue.failed_total is not None:
            # BullMQ's own counter: exact, also when removeOnFail drops failed jobs at once
            if queue.failed_total >= before.total:  # (else the counter was reset: the scores tell)
                queue.failed_since = queue.failed_total - before.total
        # the mark for the next run: the newest failure seen, or the bound used this time
        used = before.score if before is not None else first
        score = max(used, queue.newest_failure) if queue.newest_failure is not None else used
        marks[queue.name] = _Mark(score, queue.failed_total)
    for gone in marks.keys() - {q.name for q in queues}:
        del marks[gone]
    facts = _Facts(info, queues, discovery=discovery)
    if info.get("role") == "slave":
        facts.workers_note = "connected to a replica: workers connect to the master, so they are not counted here"
    elif isinstance(clients, NoPermissionError):
        facts.workers_note = f"CLIENT LIST is not permitted for this user: workers unknown ({describe(clients)})"
    elif isinstance(clients, ResponseError):
        facts.workers_note = f"CLIENT LIST refused (some managed Redis services disable it): {describe(clients)}"
    elif isinstance(clients, str):
        counted = _count_workers(clients, target.prefix, [q.name for q in queues])
        for queue in queues:
            queue.workers = counted[queue.name]
    else:
        raise ProbeFailure(Reason.PROTOCOL, "unexpected CLIENT LIST reply")
    return facts


def _observe(target: BullmqTarget, facts: _Facts) -> Observation:
    info = facts.info
    values: dict[str, Any] = {
        "version": info.get("redis_version", "unknown"),
        "role": {"master": "master", "slave": "replica"}.get(info.get("role", ""), info.get("role") or "unknown"),
        "maxmemory_policy": info.get("maxmemory_policy"),
    }
    used, limit = redis_kind._number(info, "used_memory"), redis_kind._number(info, "maxmemory")
    if used is not None and limit:
        values["memory_usage_ratio"] = round(used / limit, 4)
    queues: dict[str, Any] = {}
    jobs: list[tuple[tuple[str, ...], float]] = []
    ages: list[tuple[tuple[str, ...], float]] = []
    workers: list[tuple[tuple[str, ...], float]] = []
    for queue in facts.queues:
        age = round(queue.oldest_age, 3) if queue.oldest_age is not None and queue.counts["waiting"] else None
        queues[queue.name] = {
            **queue.counts,
            "paused": queue.paused,
            "oldest_waiting_age_seconds": age,
            "workers": queue.workers,
            "failed_delta": queue.failed_since,
            "known": queue.known,
        }
        jobs += [((queue.name, state), float(queue.counts[state])) for state in STATES]
        ages.append(((queue.name,), age or 0.0))
        if queue.workers is not None:
            workers.append(((queue.name,), float(queue.workers)))
    values["queues"] = queues
    if facts.workers_note:
        values["workers_note"] = facts.workers_note
    if facts.discovery is not None:
        values["discovery"] = facts.discovery
    waiting = sum(q.counts["waiting"] for q in facts.queues)
    failed = sum(q.failed_since for q in facts.queues)
    seen = sum(q.workers or 0 for q in facts.queues)
    count = len(facts.queues)
    summary = (
        f"{count} queue{'s' if count != 1 else ''}: {waiting} waiting, "
        f"{sum(q.counts['active'] for q in facts.queues)} active, {failed} failed since the last run"
        + ("" if facts.workers_note else f", {seen} worker connection{'s' if seen != 1 else ''}")
    )
    if facts.discovery is not None and not facts.discovery["complete"]:
        summary += " (queues: all: discovery under way, the queues found so far; SCAN goes on next run)"
    gauges = {"memory_usage_ratio": used / limit} if used is not None and limit else {}
    return Observation(
        values,
        summary,
        gauges=gauges,
        info={"version": str(values["version"]), "role": values["role"]},
        series={
            "queue_jobs": tuple(jobs),
            "queue_oldest_waiting_age_seconds": tuple(ages),
            "queue_workers": tuple(workers),
        },
    )


# --- the verdict --------------------------------------------------------------------------------------


def _each(values: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(values.get("queues", {}).items())


def _joined(problems: list[str]) -> str | None:
    return "; ".join(problems) or None


def _not_the_master(_target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    if "sentinel" not in values or values["role"] == "master":
        return None
    return f"master {values['address']}: Sentinel names it the master, but it reports role {values['role']}"


def _paused(_target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    return _joined(
        [
            f"{name}: paused with {q['waiting']} jobs waiting"
            for name, q in _each(values)
            if q["paused"] and q["waiting"]
        ]
    )


def _no_worker(_target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    return _joined(
        [
            f"{name}: {q['waiting']} job{'s' if q['waiting'] != 1 else ''} waiting and no worker connected"
            for name, q in _each(values)
            if not q["paused"] and q["waiting"] and q["workers"] == 0
        ]
    )


def _too_old(target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    limit = target.max_wait
    return _joined(
        [
            f"{name}: the oldest waiting job waits for {human_duration(q['oldest_waiting_age_seconds'])} "
            f"(max_wait {config_duration(limit)})"
            for name, q in _each(values)
            if not q["paused"] and (q["oldest_waiting_age_seconds"] or 0) > limit
        ]
    )


def _not_found(target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    return _joined(
        [
            f"{name}: no such queue (no {target.prefix}:{name}:meta key, no job, no worker: a misspelt name or prefix?)"
            for name, q in _each(values)
            if not q["known"] and not any(q[state] for state in STATES) and not q["workers"]
        ]
    )


def _none_found(target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    found = values.get("discovery")
    if found is None or not found["complete"] or found["queues_found"]:
        return None
    return f"no BullMQ queue found (no {target.prefix}:*:meta key): a wrong prefix or database?"


def _evicting(_target: BullmqTarget, values: Mapping[str, Any]) -> str | None:
    policy = values.get("maxmemory_policy")
    if policy in (None, "noeviction"):
        return None
    return (
        f"maxmemory-policy is {policy}: BullMQ requires noeviction (Redis may evict its keys, and jobs are lost "
        "without an error)"
    )


def _memory_full(target: BullmqTarget, ratio: float, _values: Mapping[str, Any]) -> str:
    return (
        f"memory usage {ratio:.0%} of maxmemory (limit {target.max_memory_usage:.0%}): when it is full, adding "
        "jobs fails"
    )


RULES: tuple[Rule, ...] = (
    unhealthy_if(_not_the_master),
    degraded_if(_evicting),
    degraded_if(_paused),
    degraded_if(_no_worker),
    degraded_if(_too_old),
    degraded_if(_not_found),
    degraded_if(_none_found),
    degraded_if(above("memory_usage_ratio", "max_memory_usage", _memory_full)),
)

OBSERVES: dict[str, Observable] = {
    "queues": Observable(
        "map",
        "per queue: waiting (the wait list and prioritized jobs), active, delayed, failed, completed, "
        "waiting_children, paused (bool), oldest_waiting_age_seconds (null when none waits), workers (null when "
        "unknown), failed_delta (failures since the previous run), known (its meta key exists)",
    ),
    "maxmemory_policy": Observable("string", "Redis's maxmemory_policy (BullMQ requires noeviction)"),
    "memory_usage_ratio": Observable("double", "used_memory / maxmemory, when maxmemory is set"),
    "version": Observable("string", "redis_version"),
    "role": Observable("string", "master or replica"),
    "workers_note": Observable("string", "why workers are unknown (CLIENT LIST refused, or a replica)"),
    "discovery": Observable("map", "with queues: all: complete, queues_found, scan_calls, capped, note"),
    "sentinel": Observable("map", "with sentinels: master_name, configured, answered, quorum, master, sentinels"),
    "address": Observable("string", "with sentinels: the master's address they name"),
}


async def probe(target: BullmqTarget, ctx: ProbeContext) -> Observation:
    url = target.connection
    run = ctx.begin(target)
    step = redis_kind.Step()
    async with run.bounded(lambda: f"no answer within {format_duration(run.budget)} ({step.now})"):
        where = await redis_kind.locate(target, url, run, step)
        async with redis_kind.connected(target, ctx, url, where, run, step) as conn:
            facts = await _read(conn, target, ctx, run, step, where.address)
    observed = _observe(target, facts)
    observed.phases = run.phases
    if where.found is not None:
        observed.values["sentinel"] = where.found.details
        observed.values["address"] = where.address
        observed.summary += f" (master {where.address}, named by the Sentinels)"
    return observed
