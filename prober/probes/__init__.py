"""The probe registry: one module per kind, one map from kind to it.

Every kind module has the same public names:

* ``MODEL``: its config model (a :class:`~prober.models.TargetBase` with ``kind: Literal["<kind>"]``:
  the one place the kind is named);
* ``probe``: ``async def probe(target, ctx) -> Observation``: it takes the target's validated config and
  the shared :class:`ProbeContext`, lets its driver raise, maps the driver's exceptions in one place
  (``classify``) and returns what it observed, never a verdict;
* ``OBSERVES``: the names it observes, with their types (docs/kinds/<kind>.md lists them);
* ``RULES``: its default verdicts, applied by :func:`prober.judge.judge`;
* ``classify``: its driver's exceptions -> :class:`~prober.errors.ProbeFailure`.

Adding a kind is adding its module's name to ``KIND_MODULES`` (docs/architecture.md says what else changes).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any, Union, get_args

from pydantic import Field

from prober.judge import Observable, Observation, Rule, hidden_names
from prober.models import TargetBase
from prober.probes._budget import DEFAULT_BYTE_BUDGET
from prober.probes._context import ProbeContext

ProbeFn = Callable[[Any, ProbeContext], Awaitable[Observation]]

# The kinds: one module each, prober/probes/<name>.py. The one list of them.
KIND_MODULES = (
    "bullmq", "clickhouse", "dns", "file", "grpc", "http", "minio", "mongodb", "postgres", "redis", "tcp", "tls",
    "websocket",
)  # fmt: skip
MODULES: tuple[ModuleType, ...] = tuple(importlib.import_module(f"prober.probes.{name}") for name in KIND_MODULES)


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind, as the rest of the prober sees it."""

    name: str
    model: type[TargetBase]
    probe: ProbeFn
    rules: tuple[Rule, ...]
    observes: Mapping[str, Observable]
    hidden: frozenset[str]
    byte_budget: int = DEFAULT_BYTE_BUDGET  # bytes a run may receive (``BYTE_BUDGET`` in the module)


def _kind(module: ModuleType) -> Kind:
    model: type[TargetBase] = module.MODEL
    (name,) = get_args(model.model_fields["kind"].annotation)
    budget = module.BYTE_BUDGET
    return Kind(name, model, module.probe, tuple(module.RULES), module.OBSERVES, hidden_names(module.OBSERVES), budget)


KINDS: dict[str, Kind] = {kind.name: kind for kind in map(_kind, MODULES)}
PROBES: dict[str, ProbeFn] = {name: kind.probe for name, kind in KINDS.items()}  # looked up on every run
Target: Any = Annotated[Union[tuple(kind.model for kind in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007

__all__ = ["KINDS", "MODULES", "PROBES", "Kind", "ProbeContext", "ProbeFn", "Target"]
