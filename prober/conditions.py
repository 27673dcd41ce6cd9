"""Conditions: CEL expressions over a kind's observations (``degraded_if``, ``unhealthy_if``).

The expressions are the Common Expression Language of Kubernetes admission policies and Envoy, compiled
once when the config is loaded and evaluated on every run by :func:`prober.judge.judge`. The library is
``common-expression-language`` (Rust): ``bench/cel_choice.py`` measured it at a small fraction of
cel-python's CPU per evaluation. Its package ``__init__`` also imports a command-line interface
(prompt_toolkit, rich, typer: about 25 MB and 300 ms); :func:`cel_module` loads only the compiled extension,
and only when a config has a condition.

What is bounded: an expression's length (``MAX_LENGTH``) and the number per list (``MAX_CONDITIONS``); CEL
itself has no loops, and the observations it reads are bounded (a body is at most 1 MiB).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, PlainValidator

MAX_LENGTH = 1000  # characters of one expression
MAX_CONDITIONS = 16  # expressions per list
COMMON_NAMES = ("latency_ms",)  # observed on every run of every kind

# The standard CEL functions and macros the library implements; operators (_+_, @in, !_) are not names.
FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bool",
        "bytes", "timestamp", "duration", "type", "dyn", "has", "all", "exists", "exists_one", "map", "filter",
        "max", "min", "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_PATH = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)(?!\w)(?!\s*\()")
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class ConditionError(ValueError):
    """An expression that cannot be used, with the column (1-based) where the problem is, when known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(f"at column {column}: {message}" if column else message)
        self.column = column


@functools.cache
def cel_module() -> ModuleType:
    """The library's compiled extension module, loaded without the package's command-line interface."""
    spec = importlib.util.find_spec("cel")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the CEL library (common-expression-language) is not installed")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"cel{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(path))
                found = importlib.util.spec_from_file_location("cel.cel", path, loader=loader)
                assert found is not None
                module = importlib.util.module_from_spec(found)
                loader.exec_module(module)
                return module
    import cel  # an unexpected layout: the whole package, CLI and all

    return cel


@dataclass(frozen=True, eq=False, slots=True)
class Condition:
    """One compiled expression: its source, program, the observation names it reads, and the member paths
    (``body.checks.memory.heapUsedRatio``) whose values a verdict quotes."""

    source: str
    program: Any
    names: frozenset[str]
    paths: tuple[tuple[str, Any], ...]

    def __str__(self) -> str:
        return self.source


def _blank_strings(source: str) -> str:
    """The source with string literals blanked out (same length), so names inside them are not names."""
    return _STRING.sub(lambda m: " " * len(m.group()), source)


def _column_of(source: str, name: str) -> int | None:
    found = re.search(rf"(?<![\w.]){re.escape(name)}\b", _blank_strings(source))
    return found.start() + 1 if found else None


def _syntax_error(exc: ValueError) -> ConditionError:
    found = _POSITION.search(str(exc))
    if found is None:
        return ConditionError(f"invalid expression: {' '.join(str(exc).split())[:200]}")
    said = found.group(3).removeprefix("Syntax error: ").split(" expecting ")[0]
    return ConditionError(f"syntax error: {said[:160]}", int(found.group(2)))  # CEL counts columns from 1


def compile_condition(source: Any) -> Condition:
    """Compile one expression (a config value). Raises :class:`ConditionError` (a ValueError)."""
    if isinstance(source, Condition):
        return source
    if not isinstance(source, str) or not source.strip():
        raise ConditionError(f"expected a CEL expression (text), got {source!r}")
    if len(source) > MAX_LENGTH:
        raise ConditionError(f"an expression is at most {MAX_LENGTH} characters, this one has {len(source)}")
    cel = cel_module()
    try:
        program = cel.compile(source)
    except ValueError as exc:
        raise _syntax_error(exc) from None
    blanked = _blank_strings(source)
    bound = set(_BOUND.findall(blanked))
    names = frozenset(program.variables()) - bound
    for function in program.references()["functions"]:
        if function[0].isalpha() and function not in FUNCTIONS:
            raise ConditionError(f"unknown function {function}()", _column_of(source, function))
    paths: list[tuple[str, Any]] = []
    for path in dict.fromkeys("".join(p.split()) for p in _PATH.findall(blanked)):
        if path.split(".")[0] in names and path not in ("true", "false", "null"):
            paths.append((path, cel.compile(path)))
    return Condition(source, program, names, tuple(paths))


def _check_count(conditions: Any) -> Any:
    if not isinstance(conditions, list):
        raise ValueError(f"expected a list of CEL expressions, got {type(conditions).__name__}")
    if len(conditions) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} conditions per list, got {len(conditions)}")
    return conditions


CompiledCondition = Annotated[Condition, PlainValidator(compile_condition), PlainSerializer(str, return_type=str)]


def unknown_names(condition: Condition, observes: Collection[str]) -> ConditionError | None:
    """A name the kind does not observe (the first, with its column), or None."""
    allowed = set(observes) | set(COMMON_NAMES)
    for name in sorted(condition.names - allowed, key=lambda n: _column_of(condition.source, n) or 0):
        known = ", ".join(sorted(allowed))
        column = _column_of(condition.source, name)
        return ConditionError(f"unknown name {name!r} (this kind observes: {known})", column)
    return None


SAMPLES = {"int": 0, "double": 0.0, "string": "", "bool": False, "list": [], "map": {}, "dyn": {}}


def type_error(condition: Condition, observes: Mapping[str, str]) -> ConditionError | None:
    """Evaluate once on zero values of the observed types: an operation no type supports (``status_code >
    'x'``) or a result that is not true or false is a config error. Missing fields of maps are not: they
    depend on what a run sees. (CEL's short-circuit may leave a branch unchecked here.)"""
    cel = cel_module()
    values = {name: SAMPLES.get(kind, {}) for name, kind in observes.items()}
    values.update({name: 0.0 for name in COMMON_NAMES})
    try:
        result = condition.program.execute(cel.Context({n: values[n] for n in condition.names if n in values}))
    except TypeError as exc:
        return ConditionError(f"type error: {_said(exc)}")
    except (KeyError, RuntimeError, ValueError):
        return None
    if not isinstance(result, bool):
        return ConditionError(f"a condition must be true or false; this one gives {type(result).__name__}")
    return None


def _said(exc: BaseException) -> str:
    return " ".join(str(exc).split(". ")[0].split())[:160]


# --- run time --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Observation values as CEL takes them: mappings as dicts (headers: names lower-cased), tuples as lists."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return {str(k).lower(): v for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


Projection = Mapping[str, tuple[tuple[str, ...], ...] | None]
"""Per observation name the conditions read: the member paths below it they reach, or None for all of it."""


def projection(conditions: Collection[Condition]) -> Projection:
    """What of each observation a target's conditions can reach. CEL reaches data only through member
    paths written in the expression (``body.checks.memory.heapUsedRatio``); where an expression uses a
    name whole (``size(body)``, ``body[key]``), all of it. Converting only that keeps a large health body
    from costing every run the conversion of all of it (bench/overhead.py)."""
    reached: dict[str, set[tuple[str, ...]] | None] = {}
    for condition in conditions:
        for name in condition.names:
            reached.setdefault(name, set())
        whole = set(condition.names) - {path.split(".")[0] for path, _ in condition.paths if "." in path}
        for path, _ in condition.paths:
            root, *rest = path.split(".")
            if not rest or root in whole:
                reached[root] = None
            elif reached.get(root) is not None:
                reached[root].add(tuple(rest))  # type: ignore[union-attr]
        for name in whole:
            reached[name] = None
    return {name: None if paths is None else tuple(sorted(paths)) for name, paths in reached.items()}


def _project(value: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """The parts of a JSON-like value at the given member paths (missing ones stay missing)."""
    if not isinstance(value, Mapping):
        return _plain(value)
    plain = _plain(value) if not isinstance(value, dict) else value
    out: dict[str, Any] = {}
    for path in paths:
        source, target = plain, out
        for step in path[:-1]:
            if not isinstance(source, dict) or step not in source:
                break
            source = source[step]
            if not isinstance(source, dict):
                target[step] = source
                break
            target = target.setdefault(step, {})
        else:
            if isinstance(source, dict) and path[-1] in source:
                target[path[-1]] = source[path[-1]]
    return out


def context(projected: Projection, values: Mapping[str, Any], latency_ms: float) -> Any:
    """One evaluation context for a run: only what the target's conditions can reach."""
    given: dict[str, Any] = {}
    for name, paths in projected.items():
        if name == "latency_ms":
            given[name] = latency_ms
        else:
            value = values.get(name)
            given[name] = _plain(value) if paths is None else _project(value, paths)
    return cel_module().Context(given)


@dataclass(frozen=True, slots=True)
class Outcome:
    holds: bool
    problem: str | None = None  # an expression that could not be evaluated: why


def evaluate(condition: Condition, scope: Any) -> Outcome:
    try:
        result = condition.program.execute(scope)
    except KeyError as exc:
        field = exc.args[0] if exc.args else "?"
        said = f"no field {field!r} in this run's observations (guard it with has())"
        return Outcome(False, f"{condition.source}: {said}")
    except (RuntimeError, TypeError, ValueError) as exc:
        return Outcome(False, f"{condition.source}: {_said(exc)}")
    if not isinstance(result, bool):
        return Outcome(False, f"{condition.source}: gave {type(result).__name__}, not true or false")
    return Outcome(result)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def quoted(condition: Condition, scope: Any) -> str:
    """The expression with the values it saw: ``x > 0.85 (0.91)``, ``a > 1 && b < 2 (a=3, b=1)``."""
    seen: list[tuple[str, str]] = []
    for path, program in condition.paths:
        try:
            seen.append((path, _shown(program.execute(scope))))
        except (KeyError, RuntimeError, TypeError, ValueError):
            continue
    if not seen:
        return condition.source
    if len(seen) == 1:
        return f"{condition.source} ({seen[0][1]})"
    return f"{condition.source} ({', '.join(f'{path}={value}' for path, value in seen)})"


Conditions = Annotated[list[CompiledCondition], BeforeValidator(_check_count)]
