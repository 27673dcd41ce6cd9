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

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from prober.conditions import Condition, compile_condition, type_error, unknown_names
from prober.errors import ConfigError
from prober.models import TIMING_FIELDS, Defaults, MetricsConfig, ServerConfig, TargetBase, url_passwords
from prober.probes import KINDS, Target
from prober.zeroconfig import Asked, derive_from_environment, is_secret_variable, with_env_file

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


def load(cli_path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration the CLI runs with: a file, or the zero-config default from the environment (with
    the application's env file when one is given). No targets at all is a ConfigError saying where the
    prober looked."""
    environ = os.environ if environ is None else environ
    environ, env_file = with_env_file(environ)
    path = config_path(cli_path, environ)
    if path is not None:
        return load_file(path, environ)
    asked = Asked(environ)
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
