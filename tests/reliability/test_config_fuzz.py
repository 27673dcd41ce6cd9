"""Fuzzing the config loader: every input is a valid config or a clean error naming where, never a
traceback."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prober import config
from prober.config import KIND_MODELS, Config
from prober.errors import ConfigError

SOURCE = "fuzz.yaml"
BASE = Path(tempfile.gettempdir())
FIELDS = sorted({name for model in KIND_MODELS.values() for name in model.model_fields} | {"bogus", "password_file"})
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["5s", "500ms", "1h", "0s", "-1s", "1m30s", "127.0.0.1:1", "http://127.0.0.1:1/", "${X}", "${X:-y}"]
    ),
    st.sampled_from(sorted(KIND_MODELS) + ["ldap", ""]),
    st.sampled_from(  # conditions: valid, broken, unknown names, type errors, too long
        [
            "latency_ms > 300",
            "body.checks.memory.heapUsedRatio > 0.85",
            "has(body.x) && body.x.startsWith('2.')",
            "status_code == 'a' || status_code > 'b'",
            "body.x >",
            "nope > 1",
            "size(nope(body))",
            "1 + 'a' > 2",
            "role == 'replica' && replication_lag_seconds > 10",
            "x" * 1500,
            "kind:postgres",
            "critical:true",
            "*",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
targets = st.dictionaries(st.sampled_from(FIELDS), values, max_size=8)
documents = st.fixed_dictionaries(
    {},
    optional={
        "server": st.dictionaries(st.sampled_from(["listen", "bearer_token", "enable_reload_endpoint", "x"]), values),
        "defaults": st.dictionaries(st.sampled_from(["interval", "timeout", "failure_threshold", "y"]), values),
        "max_concurrency": values,
        "targets": st.lists(targets, max_size=5) | values,
        "groups": st.dictionaries(st.text(max_size=8), st.lists(scalars, max_size=3) | values, max_size=3) | values,
        "extra": values,
    },
)


def check(text: str) -> None:
    try:
        loaded = config.validate(config.parse_yaml(text, SOURCE), SOURCE, {"X": "x"}, BASE)
    except ConfigError as exc:
        assert exc.problems, "an error lists its problems"
        for problem in exc.problems:
            assert problem.startswith(SOURCE), problem
            assert "Traceback" not in problem
        return
    assert isinstance(loaded, Config)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_structured_documents(document: dict[str, Any]) -> None:
    check(yaml.safe_dump(document))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_arbitrary_text(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "targets:",
                "  - name: a",
                "    kind: tcp",
                "    address: h:1",
                "  -",
                "{",
                "[",
                "&a",
                "*a",
                "!!python/object:os.system",
                "    interval: 2s",
                "    timeout: 5s",
                "defaults:",
                "  interval: x",
                "  ? [a]",
            ]
        ),
        max_size=12,
    )
)
def test_yaml_fragments(lines: list[str]) -> None:
    check("\n".join(lines))


def _bounded_document(depth: int, fan: int, levels: int, digits: int, flow: bool) -> str:
    """Documents at and past the loader's bounds: nesting, aliases that multiply, long numbers."""
    lines = ["a0: &a0 [x, y, z]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fan) + "]")
    nested = "[" * depth + "1" + "]" * depth if flow else "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(depth))
    lines.append(f"deep: {nested} 1" if not flow else f"deep: {nested}")
    lines.append("n: " + "7" * digits)
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 300),
    fan=st.integers(1, 12),
    levels=st.integers(0, 12),
    digits=st.integers(1, 6000),
    flow=st.booleans(),
)
def test_the_loader_bounds(depth: int, fan: int, levels: int, digits: int, flow: bool) -> None:
    """Whatever the nesting, the alias fan-out or the length of a number: a valid document or a clean
    error naming the line (how fast: bench/attacks.py)."""
    check(_bounded_document(depth, fan, levels, digits, flow))
