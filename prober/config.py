"""Loading and validating the configuration.

YAML is read with a loader that remembers the line of every key, ``${VAR}``/``${VAR:-default}`` are
interpolated in every string, ``<secret>_file`` twins are read, ``defaults:`` are merged into each
target, and every problem is reported as ``FILE:LINE: where: field: what is wrong`` in a
:class:`~prober.errors.ConfigError`, never as a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
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

DEFAULT_PATH = "/etc/prober/prober.yaml"
ENV_SOURCE = "<environment>"
DEFAULT_MAX_CONCURRENCY = 500
TOP_LEVEL_KEYS = ("server", "defaults", "max_concurrency", "metrics", "groups", "targets")

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

    def secrets(self) -> list[str]:
        found = [t for target in self.targets for t in target.secrets()]
        if self.server.bearer_token is not None:
            found.append(self.server.bearer_token.get_secret_value())
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
    pass


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


def _interpolate(value: Any, environ: Mapping[str, str], problems: _Problems, path: tuple[Any, ...]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            name, default = match[1], match[2]
            if name in environ:
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
            content = (base / file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.add((*path, twin), where, f"{twin}: cannot read {file_name!r}: {reason}")
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
    return Config(source, server, defaults, max_concurrency, tuple(targets), metrics, groups)


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
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{source}{line}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None


def load_file(path: str, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"]) from None
    return validate(parse_yaml(text, path), path, environ, Path(path).resolve().parent)


# --- where the config comes from, and the zero-config default ---------------------------------


def config_path(cli_path: str | None, environ: Mapping[str, str]) -> str | None:
    """``-c FILE``, else ``$PROBER_CONFIG``, else /etc/prober/prober.yaml if present, else None."""
    if cli_path:
        return cli_path
    if environ.get("PROBER_CONFIG"):
        return environ["PROBER_CONFIG"]
    return DEFAULT_PATH if Path(DEFAULT_PATH).is_file() else None


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Targets derived from the variables the application next to the sidecar already has."""
    targets: list[dict[str, Any]] = []
    if environ.get("DATABASE_URL"):
        targets.append({"name": "postgres", "kind": "postgres", "critical": True, "dsn": environ["DATABASE_URL"]})
    if environ.get("REDIS_URL"):
        targets.append({"name": "redis", "kind": "redis", "critical": False, "url": environ["REDIS_URL"]})
    if environ.get("MONGODB_URL"):
        targets.append({"name": "mongodb", "kind": "mongodb", "critical": False, "uri": environ["MONGODB_URL"]})
    if environ.get("CLICKHOUSE_URL"):
        targets.append(
            {"name": "clickhouse", "kind": "clickhouse", "critical": False, "url": environ["CLICKHOUSE_URL"]}
        )
    if environ.get("MINIO_ENDPOINT"):
        minio: dict[str, Any] = {"name": "minio", "kind": "minio", "critical": False}
        endpoint = environ["MINIO_ENDPOINT"]
        minio["endpoint"] = endpoint if "://" in endpoint else f"http://{endpoint}"
        for variable, key in (
            ("MINIO_ACCESS_KEY", "access_key"),
            ("MINIO_SECRET_KEY", "secret_key"),
            ("MINIO_BUCKET", "bucket"),
        ):
            if environ.get(variable):
                minio[key] = environ[variable]
        targets.append(minio)
    for variable, name in (("APP_LIVENESS_URL", "app-live"), ("APP_READINESS_URL", "app-ready")):
        if environ.get(variable):
            targets.append({"name": name, "kind": "http", "critical": True, "url": environ[variable]})
    for address in filter(None, (a.strip() for a in environ.get("TLS_CHECK_ADDRESSES", "").split(","))):
        address = address if ":" in address.rsplit("]", 1)[-1] else f"{address}:443"
        host = address.rsplit(":", 1)[0].strip("[]")
        name = "tls-" + re.sub(r"[^a-z0-9_.-]", "-", host.lower())
        targets.append({"name": name, "kind": "tls", "critical": False, "address": address})
    return {"targets": targets}


def load(cli_path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration the CLI runs with: a file, or the zero-config default from the environment."""
    environ = os.environ if environ is None else environ
    path = config_path(cli_path, environ)
    if path is not None:
        return load_file(path, environ)
    return validate(from_environment(environ), ENV_SOURCE, {}, Path.cwd())


def describe_targets(config: Config) -> list[str]:
    """One line per target for the start-up log and ``check-config``, with credentials masked."""
    from prober.redact import REDACTOR, redact_url

    lines = []
    for target in config.targets:
        where = target.where()
        for secret in (*url_passwords(where), *(s for s in target.secrets() if len(s) >= 3)):
            where = where.replace(secret, "***")
        role = "critical" if target.critical else "optional"
        line = f"target={target.name} kind={target.kind} {role} {redact_url(where)} every {target.interval:g}s"
        lines.append(REDACTOR(line))
    return lines
