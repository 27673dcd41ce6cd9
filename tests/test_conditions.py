"""Conditions (``degraded_if``/``unhealthy_if``, CEL) over observations: compiled once, names and types checked
against what the kind observes, evaluated with three outcomes on real answers of a real HTTP server,
PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from prober.conditions import MAX_LENGTH, ConditionError, compile_condition, projection, type_error, unknown_names
from prober.probes import KINDS, ProbeContext
from prober.probes.http import HttpTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.peers.web import Peers


def heap(ratio: float) -> dict[str, Any]:
    return {
        "status": "ok",
        "checks": {"memory": {"status": "ok", "heapUsedRatio": ratio}, "database": {"status": "ok"}},
    }


def http(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget.model_validate({"name": "api", "kind": "http", "url": url, "timeout": "2s", **fields})


async def probe(ctx: ProbeContext, url: str, **fields: Any) -> Result:
    return await run_probe(http(url, **fields), ctx)


# --- compiled once, checked against the kind's names and types -----------------------------------------


def test_syntax_errors_name_their_column() -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition("latency_ms > 300 &&")
    assert caught.value.column == 20 and "syntax error" in str(caught.value)


def test_unknown_names_and_functions_are_refused_with_the_kinds_names() -> None:
    observes = KINDS["http"].observes
    problem = unknown_names(compile_condition("status_code == 200 && bodyy.status == 'ok'"), observes)
    assert problem is not None and problem.column == 23
    assert "unknown name 'bodyy'" in str(problem) and "status_code" in str(problem)
    with pytest.raises(ConditionError, match="unknown function len"):
        compile_condition("len(body.items) > 0")
    # a comprehension's own variable is not an observation
    assert unknown_names(compile_condition("body.items.exists(i, i.status == 'up')"), observes) is None


def test_types_are_checked_on_zero_values() -> None:
    types = {name: o.type for name, o in KINDS["http"].observes.items()}
    assert type_error(compile_condition("status_code > '500'"), types) is not None
    assert type_error(compile_condition("status_code >= 500"), types) is None
    assert type_error(compile_condition("latency_ms > 300"), types) is None  # a double against an int literal
    assert "true or false" in str(type_error(compile_condition("status_code + 1"), types))


def test_length_is_bounded() -> None:
    with pytest.raises(ConditionError, match=f"at most {MAX_LENGTH} characters"):
        compile_condition("latency_ms > 1 || " * 80 + "true")


def test_only_what_conditions_reach_is_converted() -> None:
    reach = projection(
        [
            compile_condition("body.checks.memory.heapUsedRatio > 0.85 && latency_ms > 300"),
            compile_condition("body.version.startsWith('2.')"),
            compile_condition("headers['strict-transport-security'] != ''"),
        ]
    )
    assert reach == {"body": (("checks", "memory", "heapUsedRatio"), ("version",)), "latency_ms": None, "headers": None}


# --- three outcomes on real answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "state", "reason", "message"),
    [
        (0.5, State.OK, None, "HTTP 200"),
        (0.91, State.DEGRADED, None, "degraded: body.checks.memory.heapUsedRatio > 0.85 (0.91)"),
        (0.97, State.UNHEALTHY, Reason.ASSERTION, "unhealthy: body.checks.memory.heapUsedRatio > 0.95 (0.97)"),
    ],
)
async def test_heap_thresholds(
    peers: Peers, ctx: ProbeContext, ratio: float, state: State, reason: Reason | None, message: str
) -> None:
    """The first stack's readiness body reports Node's heap: degraded above 85 %, unhealthy above 95 %."""
    url = peers.script(f"heap-{ratio}", heap(ratio))
    result = await probe(
        ctx,
        url,
        unhealthy_if=["body.checks.memory.heapUsedRatio > 0.95"],
        degraded_if=["body.checks.memory.heapUsedRatio > 0.85"],
    )
    assert (result.state, result.reason, result.message) == (state, reason, message)


@pytest.mark.parametrize("count", [3, 3.0, 2.5])
async def test_numbers_compare_as_numbers_whatever_their_json_form(
    peers: Peers, ctx: ProbeContext, count: float
) -> None:
    url = peers.script(f"count-{count}", {"count": count})
    result = await probe(ctx, url, degraded_if=["body.count > 2", "latency_ms > 0.0 && body.count < 1"])
    assert result.state is State.DEGRADED and result.message.startswith("degraded: body.count > 2"), result.message


async def test_unhealthy_conditions_come_before_degraded_ones(peers: Peers, ctx: ProbeContext) -> None:
    url = peers.script("both", {"a": 1, "b": 2})
    result = await probe(ctx, url, degraded_if=["body.a == 1"], unhealthy_if=["body.b == 2"])
    assert (result.state, result.message) == (State.UNHEALTHY, "unhealthy: body.b == 2 (2)")


async def test_several_values_are_named(peers: Peers, ctx: ProbeContext) -> None:
    url = peers.script("two", {"a": 1, "b": "x"})
    result = await probe(ctx, url, degraded_if=["body.a >= 1 && body.b == 'x'"])
    assert result.message == "degraded: body.a >= 1 && body.b == 'x' (body.a=1, body.b=x)"


async def test_a_missing_field_is_unhealthy_naming_it_unless_guarded(peers: Peers, ctx: ProbeContext) -> None:
    url = peers.script("no-memory", {"status": "ok", "checks": {"database": {"status": "ok"}}})
    bare = await probe(ctx, url, degraded_if=["body.checks.memory.heapUsedRatio > 0.85"])
    assert (bare.state, bare.reason) == (State.UNHEALTHY, Reason.ASSERTION), bare.message
    assert "no field 'memory'" in bare.message
    guarded = await probe(ctx, url, degraded_if=["has(body.checks.memory) && body.checks.memory.heapUsedRatio > 0.85"])
    assert guarded.state is State.OK, guarded.message


async def test_headers_with_lower_case_names(peers: Peers, ctx: ProbeContext) -> None:
    """HSTS present: the header names of the answer, lower-cased."""
    with_hsts = peers.script("hsts", {"status": "ok"}, headers={"Strict-Transport-Security": "max-age=63072000"})
    without = peers.script("no-hsts", {"status": "ok"})
    rule = {"unhealthy_if": ["!('strict-transport-security' in headers)"]}
    assert (await probe(ctx, with_hsts, **rule)).state is State.OK
    missing = await probe(ctx, without, **rule)
    assert (missing.state, missing.reason) == (State.UNHEALTHY, Reason.ASSERTION)


async def test_the_body_is_read_only_when_a_condition_needs_it(peers: Peers, ctx: ProbeContext) -> None:
    """Without body_status_field, components or a condition on ``body``, the body is never parsed; a
    condition on status_code alone works on a body that is not JSON."""
    result = await probe(ctx, peers.url("/plain"), unhealthy_if=["status_code != 200"])
    assert result.state is State.OK and "body" not in result.details
    text = await probe(ctx, peers.url("/plain"), degraded_if=["body == 'OK'"])  # a text body is text
    assert text.state is State.DEGRADED


async def test_conditions_add_to_the_kinds_own_rules(peers: Peers, ctx: ProbeContext) -> None:
    """body_status_field says degraded, a condition holds too: both are said."""
    result = await probe(
        ctx, peers.url("/nest/degraded"), body_status_field="status", degraded_if=["status_code == 200"]
    )
    assert result.state is State.DEGRADED
    assert result.message == (
        "HTTP 200, status=degraded: the application reports itself degraded; degraded: status_code == 200 (200)"
    )


async def test_a_secret_echoed_into_a_value_is_masked_in_the_message(peers: Peers, ctx: ProbeContext) -> None:
    token = "Cond1tion-Canary-7731"
    result = await probe(
        ctx, peers.url("/echo-auth"), bearer_token=token, degraded_if=["body.status.startsWith('Bearer')"]
    )
    assert result.state is State.DEGRADED and token not in result.message and "***" in result.message
