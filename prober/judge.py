"""One judge for every kind: a run's observations become ok, degraded or unhealthy.

A kind's probe *observes*: it returns an :class:`Observation`, named and typed values (``role``,
``replication_lag_seconds``, ``status_code``, ...) with a one-line summary, and never decides a state.
Its verdicts live beside it as data, the kind's default :class:`Rule` list (``RULES`` in each
``prober/probes/<kind>.py``), built from its config keys (``max_replication_lag``, ``degraded_days``,
...). :func:`judge` applies them, the same way for every kind:

1. unhealthy rules in order: the first that holds sets the state, its reason and its message;
2. else every degraded rule that holds, their problems joined (``<context>: <problem>; <problem>``);
3. else ok, with the summary;
4. then ``degraded_latency``: an ok run slower than it is degraded.

A failure that stops a run before it can observe (refused, wrong password, a peer speaking garbage) is
raised as a :class:`~prober.errors.ProbeFailure` instead, and never reaches the judge.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prober import conditions
from prober.models import TargetBase, format_duration
from prober.status import Component, Reason, Result, Series, State

Check = Callable[[Any, Mapping[str, Any]], str | None]
"""(the target's config, the run's values) -> the problem, in words, when the rule holds; else None."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One default verdict of a kind."""

    state: State  # DEGRADED or UNHEALTHY
    check: Check
    reason: Reason = Reason.ASSERTION  # of an unhealthy verdict


def above(name: str, limit: str, say: Callable[[Any, float, Mapping[str, Any]], str]) -> Check:
    """A check that holds when the observation ``name`` is above the target's ``limit`` field; ``say``
    (target, value, values) words the problem."""

    def check(target: Any, values: Mapping[str, Any]) -> str | None:
        value = values.get(name)
        return None if value is None or value <= getattr(target, limit) else say(target, value, values)

    return check


def unhealthy_if(check: Check, reason: Reason = Reason.ASSERTION) -> Rule:
    return Rule(State.UNHEALTHY, check, reason)


def degraded_if(check: Check) -> Rule:
    return Rule(State.DEGRADED, check)


@dataclass(frozen=True, slots=True)
class Observable:
    """One name a kind observes: its CEL type (``int``, ``double``, ``string``, ``bool``, ``list``, ``map``,
    ``dyn``) and what it means; ``shown: False`` keeps it out of ``details`` (a body, headers)."""

    type: str
    doc: str
    shown: bool = True


def hidden_names(observes: Mapping[str, Observable]) -> frozenset[str]:
    return frozenset(name for name, observable in observes.items() if not observable.shown)


@dataclass(slots=True)
class Observation:
    """What one run saw. ``values`` are the observations (JSON-like: str, int, float, bool, None, lists
    and mappings of them); those the kind does not mark hidden are shown as the check's ``details``.
    Names that start with ``_`` are the kind's own working values for its rules: never shown, never
    offered to conditions."""

    values: dict[str, Any]
    summary: str = ""  # an ok run's message
    context: str = ""  # what a degraded run's message starts with ("<context>: <problems>"), if anything
    latency: float | None = None  # seconds; the runner's own measure when None
    phases: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)  # labelled samples of the families that take them


@dataclass(slots=True)
class _Verdict:
    state: State = State.OK
    reason: Reason | None = None
    problems: list[str] = field(default_factory=list)

    def unhealthy(self, reason: Reason, problem: str) -> _Verdict:
        self.state, self.reason, self.problems = State.UNHEALTHY, reason, [problem]
        return self


def _rules(rules: Sequence[Rule], state: State) -> Iterator[Rule]:
    return (rule for rule in rules if rule.state is state)


def _verdict(target: TargetBase, values: Mapping[str, Any], rules: Sequence[Rule], latency: float) -> _Verdict:
    """Unhealthy rules, then ``unhealthy_if``; then every degraded rule and the first ``degraded_if`` that
    holds. A condition that cannot be evaluated makes the run unhealthy (``assertion``)."""
    verdict = _Verdict()
    for rule in _rules(rules, State.UNHEALTHY):
        problem = rule.check(target, values)
        if problem is not None:
            return verdict.unhealthy(rule.reason, problem)
    scope = conditions.context(target.condition_reach, values, latency * 1000) if target.condition_reach else None
    for condition in target.unhealthy_if:
        outcome = conditions.evaluate(condition, scope)
        if outcome.problem is not None or outcome.holds:
            said = outcome.problem or f"unhealthy: {conditions.quoted(condition, scope)}"
            return verdict.unhealthy(Reason.ASSERTION, said)
    for rule in _rules(rules, State.DEGRADED):
        problem = rule.check(target, values)
        if problem is not None:
            verdict.problems.append(problem)
    for condition in target.degraded_if:
        outcome = conditions.evaluate(condition, scope)
        if outcome.problem is not None:
            return verdict.unhealthy(Reason.ASSERTION, outcome.problem)
        if outcome.holds:
            verdict.problems.append(f"degraded: {conditions.quoted(condition, scope)}")
            break
    if verdict.problems:
        verdict.state = State.DEGRADED
    return verdict


def judge(
    target: TargetBase,
    observed: Observation,
    rules: Sequence[Rule],
    latency: float,
    hidden: Collection[str] = (),
) -> Result:
    """The result of a run that observed: its rules applied, then ``degraded_latency``."""
    latency = observed.latency if observed.latency is not None else latency
    values = observed.values
    verdict = _verdict(target, values, rules, latency)
    state, reason, problem = verdict.state, verdict.reason, "; ".join(verdict.problems)
    if state is State.DEGRADED and observed.context:
        message = f"{observed.context}: {problem}"
    else:
        message = problem or observed.summary
    limit = target.degraded_latency
    if state is State.OK and limit is not None and latency > limit:
        state = State.DEGRADED
        slow = f"slow answer: {latency * 1000:.0f} ms > {format_duration(limit)}"
        message = f"{slow} ({message})" if message else slow
    details = {name: value for name, value in values.items() if name not in hidden and not name.startswith("_")}
    return Result(
        state,
        reason,
        message,
        latency=latency,
        details=details,
        phases=observed.phases,
        gauges=observed.gauges,
        info=observed.info,
        components=observed.components,
        series=observed.series,
    )
