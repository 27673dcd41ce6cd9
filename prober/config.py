"""Loading and validating the configuration.

YAML is read with a loader that remembers the line of every key, ``${VAR}``/``${VAR:-default}`` are
interpolated in every string, ``<secret>_file`` twins are read, ``defaults:`` are merged into each
target, and every problem is reported as ``FILE:LINE: where: field: what is wrong`` in a
:class:`~prober.errors.ConfigError`, never as a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from prober.conditions import Condition, compile_condition, type_error, unknown_names
from prober.errors import ConfigError
from prober.models import TIMING_FIELDS, Defaults, MetricsConfig, ServerConfig, TargetBase, url_passwords
from prober.probes import KINDS, Target

DEFAULT_PATH = "/etc/prober/prober.yaml"
ENV_SOURCE = "<environment>"
DEFAULT_MAX_CONCURRENCY = 500
TOP_LEVEL_KEYS = ("server", "defaults", "max_concurrency", "metrics", "groups", "targets")

# Bounds on what a config file may cost to load (README "Configuration"): a hostile or broken file is a
# clean error within a second, never a frozen daemon or a traceback.
MAX_CONFIG_BYTES = 16 * 2**20  # a config file (10,000 targets take about 1.5 MB)
MAX_SECRET_BYTES = 64 * 2**10  # a <field>_file
MAX_DEPTH = 64  # mappings and lists nested in one another
MAX_ALIAS_VALUES = 100_000  # values that aliases may add to a document (a billion laughs adds 10^9)
MAX_SCALAR = 1_000_000  # characters of one value
MAX_INT_DIGITS = 100  # digits of a whole number (every number a config takes has far fewer)

KIND_MODELS: dict[str, type[TargetBase]] = {name: kind.model for name, kind in KINDS.items()}
_TARGET = TypeAdapter[TargetBase](Target)


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration and where it came from."""

    source: str
    server: ServerConfig
    defaults: Defaults
    max_concurrency: int
    targets: tuple[TargetBase, ...]
    metrics: MetricsConfig = MetricsConfig()
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> its targets' names
    # values taken from variables whose names mark secrets (interpolated, or read by zero-config)
    variable_secrets: tuple[str, ...] = ()
    origins: tuple[tuple[str, str], ...] = ()  # zero-config: (target name, the variables it came from)
    notes: tuple[str, ...] = ()  # zero-config: variables set but not used, and why

    def secrets(self) -> list[str]:
        found = [t for target in self.targets for t in target.secrets()]
        if self.server.bearer_token is not None:
            found.append(self.server.bearer_token.get_secret_value())
        found.extend(self.variable_secrets)
        return found


# --- YAML with line numbers -------------------------------------------------------------------


class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows the line of itself and of each of its keys."""

    line: int | None = None
    lines: dict[Any, int]


class LineList(list[Any]):
    line: int | None = None
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: nesting depth, value size, and the values aliases expand to."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"a value longer than {MAX_SCALAR} characters",
                    event.start_mark,  # type: ignore[arg-type]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number with more than {MAX_INT_DIGITS} digits", node.start_mark
            )
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_aliases(root: yaml.Node) -> None:
    """Aliases may add at most ``MAX_ALIAS_VALUES`` values to a document. PyYAML shares the node an alias
    names, but interpolation and validation walk every copy: a 400-byte "billion laughs" stands for 10^9
    values. An alias to a value that contains it is refused too."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []  # children before parents
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            visiting.discard(key)
            order.append(node)
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to a value that contains it", node.start_mark
            )
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            order.append(node)
            continue
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    if sizes[id(root)] - len(sizes) <= MAX_ALIAS_VALUES:
        return
    culprit = next((n for n in order if sizes[id(n)] > MAX_ALIAS_VALUES), root)
    raise yaml.composer.ComposerError(
        None, None, f"aliases expand to more than {MAX_ALIAS_VALUES} values", culprit.start_mark
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    data = LineDict()
    data.line, data.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value", key_node.start_mark)
        if key in data:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1
    return data


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    data = LineList(loader.construct_object(child, deep=True) for child in node.value)
    data.line, data.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line_of(document: Any, path: tuple[Any, ...]) -> int | None:
    """The line of the deepest part of ``path`` the document has."""
    line = getattr(document, "line", None)
    node = document
    for step in path:
        if isinstance(node, LineDict) and step in node:
            line, node = node.lines[step], node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and 0 <= step < len(node):
            line, node = node.lines[step], node[step]
        else:
            break
    return line


# --- problems ---------------------------------------------------------------------------------


class _Problems:
    def __init__(self, source: str, document: Any) -> None:
        self.source, self.document = source, document
        self._found: list[tuple[int, int, str]] = []  # (line, order, text)
        self.broken_targets: set[int] = set()  # targets whose interpolation failed: not validated further
        self.secrets: set[str] = set()  # values interpolated from variables whose names mark secrets

    def add_at(self, path: tuple[Any, ...], message: str) -> None:
        """A problem at a document path, described the way the validation describes it."""
        if len(path) >= 2 and path[0] == "targets" and isinstance(path[1], int):
            raw = self.document["targets"][path[1]] if isinstance(self.document, dict) else None
            self.add(path, _target_where(path[1], raw), f"{_field_name(path[2:])}: {message}")
            self.broken_targets.add(path[1])
        else:
            self.add(path, _field_name(path), message)

    def add(self, path: tuple[Any, ...], where: str, message: str, line_path: tuple[Any, ...] | None = None) -> None:
        line = _line_of(self.document, path if line_path is None else line_path)
        at = f"{self.source}:{line}" if line is not None else self.source
        text = f"{at}: {where}: {message}" if where else f"{at}: {message}"
        self._found.append((line or 0, len(self._found), text))

    @property
    def lines(self) -> list[str]:
        """Every problem, in the order of the file."""
        return [text for _, _, text in sorted(self._found)]


def _describe_error(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = sorted(k for k in (model.model_fields if model else {}) if k != "kind")
        secret_files = [f"{f}_file" for f in getattr(model, "SECRET_FIELDS", ())]
        return f"unknown key (allowed: {', '.join(sorted(allowed + secret_files))})"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch" and error["loc"][-1:] == ("name",):
        return "use lower-case letters, digits, '_', '.' and '-' only"
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _field_name(loc: tuple[Any, ...]) -> str:
    """('targets', 0, 'expect_status', 1) -> 'targets[0].expect_status[1]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# --- interpolation and secret files -----------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A variable whose name says it holds a secret: its value is a secret wherever it lands (a URL's query string,
# a header, a host name), so it is masked in every output.
SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIAL|AUTH", re.IGNORECASE)
_NOT_SECRET_VALUE = re.compile(r"(?i)^(?:\d+|true|false|yes|no|on|off)$")  # masking these would garble messages


def is_secret_variable(name: str, value: str) -> bool:
    """Whether a variable's value is to be treated as a secret (plain numbers and booleans never are)."""
    return bool(SECRET_VARIABLE.search(name)) and not _NOT_SECRET_VALUE.match(value.strip())


def _interpolate(value: Any, environ: Mapping[str, str], problems: _Problems, path: tuple[Any, ...]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            name, default = match[1], match[2]
            if name in environ:
                if is_secret_variable(name, environ[name]):
                    problems.secrets.add(environ[name])
                return environ[name]
            if default is not None:
                return default
            problems.add_at(path, f"environment variable {name} is not set and has no default")
            return ""

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, LineDict):
        for key in list(value):
            value[key] = _interpolate(value[key], environ, problems, (*path, key))
        return value
    if isinstance(value, LineList):
        for index, item in enumerate(value):
            value[index] = _interpolate(item, environ, problems, (*path, index))
        return value
    return value


def _read_secret_files(
    section: dict[str, Any],
    secret_fields: tuple[str, ...],
    base: Path,
    problems: _Problems,
    path: tuple[Any, ...],
    where: str,
) -> None:
    """Replace each ``<field>_file`` by ``<field>`` holding the file's content (trailing newline cut)."""
    for name in secret_fields:
        twin = f"{name}_file"
        if twin not in section:
            continue
        file_name = section.pop(twin)
        if name in section:
            problems.add((*path, twin), where, f"{twin}: set either {name} or {twin}, not both")
            continue
        if not isinstance(file_name, str) or not file_name:
            problems.add((*path, twin), where, f"{twin}: expected a file path")
            continue
        try:
            content = read_bounded(base / file_name, MAX_SECRET_BYTES).rstrip("\r\n")
        except (OSError, ValueError) as exc:
            problems.add((*path, twin), where, f"{twin}: cannot read {file_name!r}: {_read_error(exc)}")
            continue
        if not content:
            problems.add((*path, twin), where, f"{twin}: {file_name!r} is empty")
            continue
        section[name] = content


# --- validation -------------------------------------------------------------------------------


def _section(document: dict[str, Any], key: str, problems: _Problems) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add((key,), key, f"expected a mapping, got {_type_name(value)}")
        return {}
    return value


def _validate_model(model: type[BaseModel], data: dict[str, Any], problems: _Problems, path: tuple[str, ...]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = _field_name((*path, *loc))
            problems.add((*path, *loc), where, _describe_error(error, model))
    return None


def _target_where(index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    label = f"targets[{index}]"
    if isinstance(name, str):
        label += f" {name!r}"
    if isinstance(kind, str):
        label += f" ({kind})"
    return label


def _validate_target(
    index: int, raw: Any, defaults: dict[str, Any], base: Path, problems: _Problems
) -> TargetBase | None:
    path = ("targets", index)
    where = _target_where(index, raw)
    if not isinstance(raw, dict):
        problems.add(path, where, f"expected a mapping, got {_type_name(raw)}")
        return None
    kind = raw.get("kind")
    if kind is None:
        problems.add(path, where, "kind: required field is missing (one of: " + ", ".join(KIND_MODELS) + ")")
        return None
    model = KIND_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        problems.add(
            (*path, "kind"),
            where,
            f"kind: kind {kind!r} is not supported yet (supported: {', '.join(KIND_MODELS)})",
        )
        return None
    data = dict(raw)
    _read_secret_files(data, model.SECRET_FIELDS, base, problems, path, where)
    inherited = {key: value for key, value in defaults.items() if key not in data}
    data.update(inherited)
    try:
        target = _TARGET.validate_python(data)
    except ValidationError as exc:
        failed = {tuple(e["loc"])[1:] for e in exc.errors()}  # (field,) or (field, index): reported already
        _report_misfits(kind, _compiled(data, failed), path, where, problems)
        for error in exc.errors():
            loc = tuple(error["loc"])[1:]  # drop the discriminator tag pydantic puts first
            field = _field_name(loc)
            line_path: tuple[Any, ...] = (*path, *loc)
            if loc and loc[0] in inherited:
                line_path, field = ("defaults", *loc), f"{field} (from defaults)"
            said = _describe_error(error, model)
            problems.add(line_path, where, f"{field}: {said}" if field else said, line_path)
        return None
    if target.timeout >= target.interval:
        field = "timeout" if "timeout" in raw else "interval"
        problems.add(
            (*path, field),
            where,
            f"{field}: timeout ({target.timeout:g}s) must be shorter than interval ({target.interval:g}s)",
        )
        return None
    if not _conditions_fit(target, path, where, problems):
        return None
    return target


CONDITION_FIELDS = ("unhealthy_if", "degraded_if")


def _report_misfits(
    kind: str, found: Iterable[tuple[str, int, Condition]], path: tuple[Any, ...], where: str, problems: _Problems
) -> bool:
    """Each condition reads only names the kind observes, with operations their types support; False (and
    the problems added) if one does not."""
    observes = {name: observable.type for name, observable in KINDS[kind].observes.items()}
    fit = True
    for key, index, condition in found:
        problem = unknown_names(condition, observes) or type_error(condition, observes)
        if problem is not None:
            problems.add((*path, key, index), where, f"{key}[{index}]: {problem}")
            fit = False
    return fit


def _compiled(data: dict[str, Any], failed: set[Any]) -> Iterator[tuple[str, int, Condition]]:
    """The raw conditions of a target that did not validate, those that compile (the rest are reported)."""
    for key in CONDITION_FIELDS:
        sources = data.get(key)
        if not isinstance(sources, list) or (key,) in failed:
            continue
        for index, source in enumerate(sources):
            if (key, index) not in failed:
                try:
                    yield key, index, compile_condition(source)
                except ValueError:
                    continue


def _conditions_fit(target: TargetBase, path: tuple[Any, ...], where: str, problems: _Problems) -> bool:
    found = ((key, i, c) for key in CONDITION_FIELDS for i, c in enumerate(getattr(target, key)))
    return _report_misfits(target.kind, found, path, where, problems)


def validate(document: Any, source: str, environ: Mapping[str, str], base: Path) -> Config:
    """Validate a parsed document; raise ConfigError listing every problem."""
    problems = _Problems(source, document)
    if document is None:
        document = LineDict()
    if not isinstance(document, dict):
        raise ConfigError([f"{source}: expected a mapping with 'targets:' at the top, got {_type_name(document)}"])
    _interpolate(document, environ, problems, ())
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problems.add((key,), "", f"unknown key {key!r} (allowed: {', '.join(TOP_LEVEL_KEYS)})")

    server_data = dict(_section(document, "server", problems))
    _read_secret_files(server_data, ServerConfig.SECRET_FIELDS, base, problems, ("server",), "server")
    server = _validate_model(ServerConfig, server_data, problems, ("server",))
    defaults_data = _section(document, "defaults", problems)
    defaults = _validate_model(Defaults, defaults_data, problems, ("defaults",))
    metrics = _validate_model(MetricsConfig, _section(document, "metrics", problems), problems, ("metrics",))

    max_concurrency = document.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        problems.add(
            ("max_concurrency",), "max_concurrency", f"expected a positive whole number, got {max_concurrency!r}"
        )

    raw_targets = document.get("targets", [])
    if raw_targets is None:
        raw_targets = []
    if not isinstance(raw_targets, list):
        problems.add(("targets",), "targets", f"expected a list, got {_type_name(raw_targets)}")
        raw_targets = []
    inheritable = {k: v for k, v in defaults_data.items() if k in TIMING_FIELDS} if defaults else {}
    targets: list[TargetBase] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_targets):
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and name in seen:
            problems.add(
                ("targets", index, "name"),
                _target_where(index, raw),
                f"name: duplicate target name {name!r} (first used by targets[{seen[name]}])",
            )
            continue
        if isinstance(name, str):
            seen[name] = index
        if index in problems.broken_targets:
            continue
        target = _validate_target(index, raw, inheritable, base, problems)
        if target is not None:
            targets.append(target)
    groups = _groups(_section(document, "groups", problems), targets, problems)
    if problems.lines or server is None or defaults is None or metrics is None:
        raise ConfigError(problems.lines)
    secrets = tuple(sorted(problems.secrets))
    return Config(
        source, server, defaults, max_concurrency, tuple(targets), metrics, groups=groups, variable_secrets=secrets
    )


# --- health groups ------------------------------------------------------------------------------------

GROUP_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")
_SELECTORS = ("kind:", "critical:")


def _select(selector: str, targets: list[TargetBase]) -> list[str] | str:
    """The names a selector picks (``name``, ``kind:postgres``, ``critical:true``, ``*``), or what is wrong."""
    if selector == "*":
        return [t.name for t in targets]
    if selector.startswith("kind:"):
        kind = selector.removeprefix("kind:")
        if kind not in KINDS:
            return f"unknown kind {kind!r} (kinds: {', '.join(KINDS)})"
        return [t.name for t in targets if t.kind == kind]
    if selector.startswith("critical:"):
        flag = selector.removeprefix("critical:")
        if flag not in ("true", "false"):
            return f"expected critical:true or critical:false, got {selector!r}"
        return [t.name for t in targets if t.critical == (flag == "true")]
    if any(t.name == selector for t in targets):
        return [selector]
    nearest = difflib.get_close_matches(selector, [t.name for t in targets], n=1)
    hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
    return f"no target named {selector!r}{hint}; selectors are target names, kind:KIND, critical:true|false or *"


def _groups(section: dict[str, Any], targets: list[TargetBase], problems: _Problems) -> dict[str, tuple[str, ...]]:
    """``groups: {live: [api-live], ready: [kind:postgres, critical:true]}`` -> group -> target names (in
    config order). Like Spring Boot's health groups: ``/status/<group>`` answers for those targets alone."""
    groups: dict[str, tuple[str, ...]] = {}
    for name, selectors in section.items():
        where = f"groups.{name}"
        if not isinstance(name, str) or not GROUP_NAME.match(name):
            problems.add(("groups", name), where, "a group name uses lower-case letters, digits, '_', '.' and '-' only")
            continue
        if not isinstance(selectors, list) or not selectors:
            problems.add(
                ("groups", name), where, "expected a list of target names or selectors (kind:KIND, critical:true)"
            )
            continue
        chosen: set[str] = set()
        for index, selector in enumerate(selectors):
            picked = _select(selector, targets) if isinstance(selector, str) else f"expected text, got {selector!r}"
            if isinstance(picked, str):
                problems.add(("groups", name, index), f"{where}[{index}]", picked)
            else:
                chosen.update(picked)
        if not chosen:
            continue
        groups[name] = tuple(t.name for t in targets if t.name in chosen)
    return groups


def parse_yaml(text: str, source: str) -> Any:
    """The document, or a ConfigError naming the line; bounded by ``MAX_DEPTH``, ``MAX_SCALAR``,
    ``MAX_INT_DIGITS`` and ``MAX_ALIAS_VALUES``, so no file can freeze the loader."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{source}{line}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    except (RecursionError, ValueError, OverflowError, MemoryError) as exc:  # bounded above; never a traceback
        raise ConfigError([f"{source}: invalid YAML: {type(exc).__name__}: {str(exc)[:200]}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _kind_of_file(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes. A FIFO, a device, a directory or a
    larger file is refused (ValueError, saying which) without blocking: the file is opened non-blocking
    and checked on its descriptor, so it cannot be swapped between the check and the read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{_kind_of_file(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit} bytes ({info.st_size} bytes)")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data.decode("utf-8")


def _read_error(exc: OSError | ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def load_file(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Load a config file. Its path is resolved first, symbolic links and all, and the file and its
    relative ``<field>_file`` secrets are read from that one directory: when a Kubernetes ConfigMap
    swaps its ``..data`` link meanwhile, a load sees one version whole, never two mixed."""
    environ = os.environ if environ is None else environ
    try:
        real = Path(path).resolve(strict=True)
        text = read_bounded(real, MAX_CONFIG_BYTES)
    except (OSError, ValueError, RuntimeError) as exc:
        reason = _read_error(exc) if isinstance(exc, OSError | ValueError) else str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"]) from None
    config = validate(parse_yaml(text, path), path, environ, real.parent)
    if not config.targets:
        raise ConfigError(
            [
                f"{path}: no targets to probe: the config file names none "
                "(with a config file, the zero-config variables are not read)"
            ]
        )
    return config


# --- where the config comes from, and the zero-config default ---------------------------------


def config_path(cli_path: str | None, environ: Mapping[str, str]) -> str | None:
    """``-c FILE``, else ``$PROBER_CONFIG``, else /etc/prober/prober.yaml if present, else None."""
    if cli_path:
        return cli_path
    if environ.get("PROBER_CONFIG"):
        return environ["PROBER_CONFIG"]
    return DEFAULT_PATH if Path(DEFAULT_PATH).is_file() else None


@dataclass(frozen=True, slots=True)
class EnvVariable:
    """One variable zero-config reads: the target it feeds, and what it gives."""

    name: str
    target: str  # the target's name (and, for several sources of one dependency, their precedence)
    gives: str


# Every variable zero-config reads, in precedence order within each target: when several name the same
# dependency, the first set wins and the others are reported as ignored. (README, "Zero-config".)
ZERO_CONFIG_VARIABLES: tuple[EnvVariable, ...] = (
    EnvVariable("DATABASE_URL", "postgres", "a postgres:// or postgresql:// URL (libpq, Prisma or node-postgres form)"),
    EnvVariable("POSTGRES_URL", "postgres", "the same, if DATABASE_URL is not set"),
    EnvVariable("POSTGRESQL_URL", "postgres", "the same, if neither is set"),
    EnvVariable("PGHOST", "postgres", "libpq's variables, if no URL is set: the host"),
    EnvVariable("PGPORT", "postgres", "with PGHOST: the port"),
    EnvVariable("PGUSER", "postgres", "with PGHOST: the user"),
    EnvVariable("PGPASSWORD", "postgres", "with PGHOST: the password"),
    EnvVariable("PGDATABASE", "postgres", "with PGHOST: the database"),
    EnvVariable("PGSSLMODE", "postgres", "with PGHOST: sslmode"),
    EnvVariable("REDIS_URL", "redis", "a redis:// or rediss:// URL"),
    EnvVariable("REDIS_HOST", "redis", "if REDIS_URL is not set: the host (ioredis/BullMQ settings)"),
    EnvVariable("REDIS_PORT", "redis", "with REDIS_HOST: the port"),
    EnvVariable("REDIS_USERNAME", "redis", "with REDIS_HOST: the ACL user"),
    EnvVariable("REDIS_PASSWORD", "redis", "with REDIS_HOST: the password"),
    EnvVariable("REDIS_DB", "redis", "with REDIS_HOST: the database number"),
    EnvVariable("REDIS_TLS", "redis", "with REDIS_HOST: true for TLS"),
    EnvVariable("MONGODB_URI", "mongodb", "a mongodb:// or mongodb+srv:// URI"),
    EnvVariable("MONGODB_URL", "mongodb", "the same, if MONGODB_URI is not set"),
    EnvVariable("MONGO_URI", "mongodb", "the same, if neither is set"),
    EnvVariable("MONGO_URL", "mongodb", "the same, if none of the above is set"),
    EnvVariable("CLICKHOUSE_URL", "clickhouse", "an http(s):// URL (@clickhouse/client's url)"),
    EnvVariable("CLICKHOUSE_HOST", "clickhouse", "if CLICKHOUSE_URL is not set: a host, or an http(s):// URL"),
    EnvVariable("CLICKHOUSE_PORT", "clickhouse", "with CLICKHOUSE_HOST: the port"),
    EnvVariable("CLICKHOUSE_USER", "clickhouse", "with CLICKHOUSE_HOST: the user"),
    EnvVariable("CLICKHOUSE_PASSWORD", "clickhouse", "with CLICKHOUSE_HOST: the password"),
    EnvVariable("CLICKHOUSE_DATABASE", "clickhouse", "with CLICKHOUSE_HOST: the database"),
    EnvVariable("MINIO_ENDPOINT", "minio", "minio-js's endPoint: a bare host (or a URL)"),
    EnvVariable("MINIO_PORT", "minio", "with MINIO_ENDPOINT: the port"),
    EnvVariable("MINIO_USE_SSL", "minio", "with MINIO_ENDPOINT: true for https (default false)"),
    EnvVariable("MINIO_ACCESS_KEY", "minio", "with MINIO_ENDPOINT: the access key"),
    EnvVariable("MINIO_SECRET_KEY", "minio", "with MINIO_ENDPOINT: the secret key"),
    EnvVariable("MINIO_ROOT_USER", "minio", "with MINIO_ENDPOINT, if MINIO_ACCESS_KEY is not set: the access key"),
    EnvVariable("MINIO_ROOT_PASSWORD", "minio", "with MINIO_ROOT_USER: the secret key"),
    EnvVariable("MINIO_BUCKET", "minio", "with MINIO_ENDPOINT: the bucket to list"),
    EnvVariable("S3_ENDPOINT", "s3", "if MINIO_ENDPOINT is not set: any S3 store's URL (no MinIO health endpoints)"),
    EnvVariable("AWS_ACCESS_KEY_ID", "s3", "with S3_ENDPOINT: the access key"),
    EnvVariable("AWS_SECRET_ACCESS_KEY", "s3", "with S3_ENDPOINT: the secret key"),
    EnvVariable("S3_BUCKET", "s3", "with S3_ENDPOINT: the bucket to list"),
    EnvVariable("AWS_REGION", "s3", "with S3_ENDPOINT: the region"),
    EnvVariable("APP_LIVENESS_URL", "app-live", "the application's liveness URL (http, critical)"),
    EnvVariable("APP_READINESS_URL", "app-ready", "the application's readiness URL (http, critical)"),
    EnvVariable("TLS_CHECK_ADDRESSES", "tls-<host>", "comma-separated host[:port] whose certificates are checked"),
)
ENV_FILE_VARIABLE = "PROBER_ENV_FILE"


@dataclass(slots=True)
class _Derived:
    """Targets derived from the environment, where each came from, what was left unused, which values are secret."""

    environ: Mapping[str, str]
    targets: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)

    def get(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        if not value:
            return None
        if is_secret_variable(name, value):
            self.secrets.add(value)
        return value

    def add(self, target: dict[str, Any], used: list[str]) -> None:
        self.targets.append(target)
        self.origins[target["name"]] = used

    def ignore(self, names: list[str], why: str) -> None:
        set_names = [n for n in names if self.environ.get(n, "").strip()]
        if set_names:
            self.notes.append(f"{', '.join(set_names)} {'is' if len(set_names) == 1 else 'are'} set but ignored: {why}")


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _first(derived: _Derived, names: list[str], accept: Any = None) -> str | None:
    """The first of ``names`` that is set (and that ``accept(value)`` takes); the later ones are noted."""
    chosen = None
    for name in names:
        value = derived.get(name)
        if value is None or (accept is not None and not accept(value)):
            continue
        if chosen is None:
            chosen = name
        else:
            derived.ignore([name], f"{chosen} takes precedence (order: {', '.join(names)})")
    return chosen


def _postgres(derived: _Derived) -> None:
    database_url = derived.get("DATABASE_URL")
    postgres_url = database_url is not None and _scheme(database_url) in ("postgres", "postgresql")
    if database_url is not None and not postgres_url and _scheme(database_url) not in ("mongodb", "mongodb+srv"):
        scheme = _scheme(database_url) or "no scheme"
        derived.notes.append(f"DATABASE_URL is set but ignored: {scheme} is not a kind the prober knows")
    names = ["DATABASE_URL", "POSTGRES_URL", "POSTGRESQL_URL"]
    chosen = _first(derived, names, lambda v: _scheme(v) in ("postgres", "postgresql"))
    libpq = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE"]
    if chosen is not None:
        derived.add({"name": "postgres", "kind": "postgres", "critical": True, "dsn": derived.get(chosen)}, [chosen])
        derived.ignore(libpq, f"the postgres target comes from {chosen}")
        return
    host = derived.get("PGHOST")
    if host is None:
        derived.ignore(libpq[1:], "PGHOST is not set")
        return
    pairs = [("host", host)]
    for variable, key in (("PGPORT", "port"), ("PGUSER", "user"), ("PGDATABASE", "dbname"), ("PGSSLMODE", "sslmode")):
        value = derived.get(variable)
        if value is not None:
            pairs.append((key, value))
    dsn = " ".join(f"{key}='{_quoted(value)}'" for key, value in pairs)
    target: dict[str, Any] = {"name": "postgres", "kind": "postgres", "critical": True, "dsn": dsn}
    password = derived.get("PGPASSWORD")
    if password is not None:
        target["password"] = password
    derived.add(target, [name for name in libpq if derived.environ.get(name, "").strip()])


def _url_else_host(derived: _Derived, name: str, url_var: str, host_var: str, parts: list[str]) -> str | None:
    """A dependency given as one URL (``REDIS_URL``) or as a host and its parts (``REDIS_HOST``, ...): the
    target from the URL when it is set (the others noted as ignored); else the host, if set."""
    url = derived.get(url_var)
    if url is not None:
        derived.add({"name": name, "kind": name, "critical": False, "url": url}, [url_var])
        derived.ignore([host_var, *parts], f"the {name} target comes from {url_var}")
        return None
    host = derived.get(host_var)
    if host is None:
        derived.ignore(parts, f"{host_var} is not set")
    return host


def _add_from_parts(derived: _Derived, target: dict[str, Any], prefix: str, parts: list[str]) -> None:
    """Add a target built from ``<prefix>_HOST`` and its parts; ``<prefix>_PASSWORD`` goes into its password field."""
    password = derived.get(f"{prefix}_PASSWORD")
    if password is not None:
        target["password"] = password
    used = [f"{prefix}_HOST", *(name for name in parts if derived.environ.get(name, "").strip())]
    derived.add(target, used)


def _quoted(value: str) -> str:
    """A value for libpq's key='value' form: backslashes and quotes escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _redis(derived: _Derived) -> None:
    parts = ["REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB", "REDIS_TLS"]
    host = _url_else_host(derived, "redis", "REDIS_URL", "REDIS_HOST", parts)
    if host is None:
        return
    tls = (derived.get("REDIS_TLS") or "").lower() in ("true", "1", "yes", "on")
    user = derived.get("REDIS_USERNAME")
    userinfo = f"{quote(user, safe='')}@" if user else ""
    host_part = f"[{host}]" if ":" in host else host
    built = f"{'rediss' if tls else 'redis'}://{userinfo}{host_part}:{derived.get('REDIS_PORT') or 6379}"
    built += f"/{derived.get('REDIS_DB')}" if derived.get("REDIS_DB") else ""
    _add_from_parts(derived, {"name": "redis", "kind": "redis", "critical": False, "url": built}, "REDIS", parts)


def _mongodb(derived: _Derived) -> None:
    names = ["MONGODB_URI", "MONGODB_URL", "MONGO_URI", "MONGO_URL"]
    chosen = _first(derived, names)
    database_url = derived.get("DATABASE_URL")
    if chosen is None and database_url is not None and _scheme(database_url) in ("mongodb", "mongodb+srv"):
        chosen = "DATABASE_URL"  # Prisma's MongoDB connector reads DATABASE_URL too
    elif chosen is not None and database_url is not None and _scheme(database_url) in ("mongodb", "mongodb+srv"):
        derived.ignore(["DATABASE_URL"], f"{chosen} takes precedence for the mongodb target")
    if chosen is not None:
        derived.add({"name": "mongodb", "kind": "mongodb", "critical": False, "uri": derived.get(chosen)}, [chosen])


def _clickhouse(derived: _Derived) -> None:
    parts = ["CLICKHOUSE_PORT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DATABASE"]
    host = _url_else_host(derived, "clickhouse", "CLICKHOUSE_URL", "CLICKHOUSE_HOST", parts)
    if host is None:
        return
    base = host if "://" in host else f"http://{host}"
    split = urlsplit(base)
    port = derived.get("CLICKHOUSE_PORT")
    netloc = split.netloc if port is None or split.port is not None else f"{split.netloc}:{port}"
    user = derived.get("CLICKHOUSE_USER")
    if user:
        netloc = f"{quote(user, safe='')}@{netloc}"
    database = derived.get("CLICKHOUSE_DATABASE") or split.path.strip("/")
    url = f"{split.scheme}://{netloc}/{quote(database or '', safe='')}"
    target: dict[str, Any] = {"name": "clickhouse", "kind": "clickhouse", "critical": False, "url": url}
    _add_from_parts(derived, target, "CLICKHOUSE", parts)


def _object_storage(derived: _Derived) -> None:
    minio_parts = ["MINIO_PORT", "MINIO_USE_SSL", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ROOT_USER"]
    minio_parts += ["MINIO_ROOT_PASSWORD", "MINIO_BUCKET"]
    s3_parts = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "AWS_REGION"]
    endpoint = derived.get("MINIO_ENDPOINT")
    if endpoint is not None:
        used = ["MINIO_ENDPOINT"]
        target: dict[str, Any] = {"name": "minio", "kind": "minio", "critical": False}
        if "://" in endpoint:
            target["endpoint"] = endpoint
            derived.ignore(["MINIO_PORT", "MINIO_USE_SSL"], "MINIO_ENDPOINT is a URL, which says both")
        else:  # minio-js's endPoint; apps write useSSL: process.env.MINIO_USE_SSL === 'true'
            target["endpoint"] = endpoint
            target["use_ssl"] = (derived.get("MINIO_USE_SSL") or "").lower() in ("true", "1", "yes", "on")
            used += [n for n in ("MINIO_USE_SSL",) if derived.environ.get(n, "").strip()]
            if derived.get("MINIO_PORT") is not None and ":" not in endpoint:
                target["port"] = derived.get("MINIO_PORT")
                used.append("MINIO_PORT")
            elif ":" in endpoint:
                derived.ignore(["MINIO_PORT"], "MINIO_ENDPOINT names its port")
        keys = _first(derived, ["MINIO_ACCESS_KEY", "MINIO_ROOT_USER"])
        if keys is not None:
            secret = "MINIO_SECRET_KEY" if keys == "MINIO_ACCESS_KEY" else "MINIO_ROOT_PASSWORD"
            target["access_key"] = derived.get(keys)
            if derived.get(secret) is not None:
                target["secret_key"] = derived.get(secret)
                used += [keys, secret]
            other = "MINIO_ROOT_PASSWORD" if secret == "MINIO_SECRET_KEY" else "MINIO_SECRET_KEY"
            derived.ignore([other], f"the keys come from {keys} and {secret}")
        if derived.get("MINIO_BUCKET") is not None:
            target["bucket"] = derived.get("MINIO_BUCKET")
            used.append("MINIO_BUCKET")
        derived.add(target, used)
        derived.ignore(["S3_ENDPOINT", *s3_parts], "the object store comes from MINIO_ENDPOINT")
        return
    derived.ignore(minio_parts, "MINIO_ENDPOINT is not set")
    s3 = derived.get("S3_ENDPOINT")
    if s3 is None:
        return
    target = {"name": "s3", "kind": "minio", "critical": False, "health_endpoints": False}
    target["endpoint"] = s3 if "://" in s3 else f"https://{s3}"
    used = ["S3_ENDPOINT"]
    for variable, key in (
        ("AWS_ACCESS_KEY_ID", "access_key"),
        ("AWS_SECRET_ACCESS_KEY", "secret_key"),
        ("S3_BUCKET", "bucket"),
        ("AWS_REGION", "region"),
    ):
        value = derived.get(variable)
        if value is not None:
            target[key] = value
            used.append(variable)
    derived.add(target, used)


def _apps(derived: _Derived) -> None:
    for variable, name in (("APP_LIVENESS_URL", "app-live"), ("APP_READINESS_URL", "app-ready")):
        url = derived.get(variable)
        if url is not None:
            derived.add({"name": name, "kind": "http", "critical": True, "url": url}, [variable])
    for address in filter(None, (a.strip() for a in derived.environ.get("TLS_CHECK_ADDRESSES", "").split(","))):
        address = address if ":" in address.rsplit("]", 1)[-1] else f"{address}:443"
        host = address.rsplit(":", 1)[0].strip("[]")
        name = "tls-" + re.sub(r"[^a-z0-9_.-]", "-", host.lower())
        derived.add({"name": name, "kind": "tls", "critical": False, "address": address}, ["TLS_CHECK_ADDRESSES"])


def derive_from_environment(environ: Mapping[str, str]) -> _Derived:
    """Targets derived from the variables the application next to the sidecar already has
    (``ZERO_CONFIG_VARIABLES``), with where each came from and the variables left unused."""
    derived = _Derived(environ)
    for step in (_postgres, _redis, _mongodb, _clickhouse, _object_storage, _apps):
        step(derived)
    return derived


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The zero-config document: targets derived from the application's variables."""
    return {"targets": derive_from_environment(environ).targets}


def read_env_file(path: str) -> dict[str, str]:
    """The application's dotenv file (python-dotenv's syntax: ``KEY=value``, ``export``, quotes, ``${VAR}``).
    A line it cannot parse is a config error naming the line, never echoing it (it may hold a secret)."""
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the env file: {reason}"]) from None
    bad = [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        raise ConfigError([f"{path}:{line}: env file: cannot parse this line (expected KEY=value)" for line in bad])
    return {key: value for key, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}


def with_env_file(environ: Mapping[str, str]) -> tuple[Mapping[str, str], str | None]:
    """The environment, plus the application's env file named by ``PROBER_ENV_FILE`` (``--env-file``);
    a variable set in the process's own environment wins, as with systemd's EnvironmentFile= and dotenv."""
    path = environ.get(ENV_FILE_VARIABLE)
    if not path:
        return environ, None
    return {**read_env_file(path), **environ}, path


class _Asked(Mapping[str, str]):
    """An environment that remembers the variables asked for: the list of variables zero-config looks
    for is whatever :func:`from_environment` reads, never a list kept by hand beside it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.asked: dict[str, None] = {}

    def __getitem__(self, key: str) -> str:
        self.asked[key] = None
        return self._environ[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked[key] = None
        return key in self._environ

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def variables_looked_for(environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables zero-config reads to find targets (asked of ``from_environment`` itself)."""
    asked = _Asked({} if environ is None else environ)
    from_environment(asked)
    return list(asked.asked)


def load(cli_path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration the CLI runs with: a file, or the zero-config default from the environment (with
    the application's env file when one is given). No targets at all is a ConfigError saying where the
    prober looked."""
    environ = os.environ if environ is None else environ
    environ, env_file = with_env_file(environ)
    path = config_path(cli_path, environ)
    if path is not None:
        return load_file(path, environ)
    asked = _Asked(environ)
    derived = derive_from_environment(asked)
    source = ENV_SOURCE if env_file is None else f"{ENV_SOURCE} and {env_file}"
    config = validate({"targets": derived.targets}, source, {}, Path.cwd())
    if not config.targets:
        raise ConfigError(
            [
                f"{source}: no targets to probe: no config file (tried: -c FILE, $PROBER_CONFIG, {DEFAULT_PATH}) "
                f"and none of the zero-config variables is set (looked for: {', '.join(asked.asked)})",
                *(f"{source}: note: {note}" for note in derived.notes),
            ]
        )
    return dataclasses.replace(
        config,
        variable_secrets=tuple(sorted(derived.secrets)),
        origins=tuple((name, ", ".join(used)) for name, used in derived.origins.items()),
        notes=tuple(derived.notes),
    )


def describe_targets(config: Config) -> list[str]:
    """One line per target for the start-up log and ``check-config``, with credentials masked, where a
    zero-config target came from, and the variables zero-config left unused."""
    from prober.redact import REDACTOR, redact_url

    lines = []
    origins = dict(config.origins)
    for target in config.targets:
        where = target.where()
        for secret in (s for s in (*url_passwords(where), *target.secrets()) if len(s) >= 3):
            where = where.replace(secret, "***")
        role = "critical" if target.critical else "optional"
        line = f"target={target.name} kind={target.kind} {role} {redact_url(where)} every {target.interval:g}s"
        if target.name in origins:
            line += f" (from {origins[target.name]})"
        lines.append(REDACTOR(line))
    lines.extend(REDACTOR(f"note: {note}") for note in config.notes)
    return lines
