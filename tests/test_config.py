"""Config loading: a table of invalid files with their expected messages, interpolation, secret files,
defaults, the zero-config default from the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from prober import config, zeroconfig
from prober.errors import ConfigError
from prober.models import DEFAULT_DURATION_BUCKETS as DURATION_BUCKETS
from prober.probes import KINDS
from prober.probes.http import HttpTarget
from prober.probes.tcp import TcpTarget
from prober.probes.tls import TlsTarget
from tests.helpers import ROOT, run_cli

INVALID = ROOT / "tests" / "configs" / "invalid"

# file -> the problem line expected (FILE:LINE: where: field: what)
EXPECTED: dict[str, str] = {
    "bad-address.yaml": ":4: targets[0] 'smtp' (tcp): address: expected host:port (or [ipv6]:port), got 'mail'",
    "bad-default-inherited.yaml": ":7: targets[0] 'api' (tcp): timeout: timeout (3s) must be shorter than "
    "interval (2s)",
    "bad-duration-buckets.yaml": ":2: metrics.duration_buckets: bucket bounds must be strictly increasing, got 0.25 "
    "after 0.5",
    "bad-duration.yaml": ":5: targets[0] 'api' (http): interval: expected a duration such as 500ms, 15s, 2m or 1h, "
    "got '15 seconds'",
    "bad-expect-status.yaml": ":5: targets[0] 'api' (http): expect_status[1]: Input should be less than or "
    "equal to 599",
    "bad-header.yaml": ":5: targets[0] 'api' (http): headers: 'X-Api Key' is not a valid header name",
    "bad-listen.yaml": ":2: server.listen: Input should be a valid string",
    "ui-token-without-token.yaml": ":1: server: ui: token needs server.bearer_token_file",
    "bad-max-concurrency.yaml": ":1: max_concurrency: expected a positive whole number, got 'lots'",
    "bad-name.yaml": ":2: targets[0] 'Api Ready' (tcp): name: use lower-case letters, digits, '_', '.' and '-' only",
    "bad-threshold.yaml": ":2: defaults.failure_threshold: Input should be greater than 0",
    "bad-url.yaml": ":4: targets[0] 'api' (http): url: expected an http:// or https:// URL with a host",
    "bad-yaml.yaml": ":4: invalid YAML: mapping values are not allowed here",
    "bare-number-duration.yaml": ":2: defaults.timeout: expected a duration such as 500ms, 15s, 2m or 1h, got 5",
    "duplicate-names.yaml": ":5: targets[1] 'db' (tcp): name: duplicate target name 'db' (first used by targets[0])",
    "duplicate-yaml-key.yaml": ":5: invalid YAML: duplicate key 'address'",
    "missing-field.yaml": ":2: targets[0] 'cert' (tls): address: required field is missing",
    "missing-kind.yaml": ":2: targets[0] 'what': kind: required field is missing (one of: ",
    "not-a-mapping.yaml": ": expected a mapping with 'targets:' at the top, got a list",
    "secret-and-file.yaml": ":6: targets[0] 'api' (http): bearer_token_file: set either bearer_token or "
    "bearer_token_file, not both",
    "targets-not-a-list.yaml": ":1: targets: expected a list, got a mapping",
    "timeout-not-shorter.yaml": ":6: targets[0] 'api' (http): timeout: timeout (5s) must be shorter than interval (5s)",
    "undefined-variable.yaml": ":4: targets[0] 'api' (http): url: environment variable PROBER_TEST_UNDEFINED_VARIABLE "
    "is not set and has no default",
    "unknown-key.yaml": ":5: targets[0] 'api' (http): expected_status: unknown key (allowed: ",
    "unknown-kind.yaml": ":3: targets[0] 'dir' (ldap): kind: kind 'ldap' is not supported yet (supported: "
    f"{', '.join(KINDS)})",
    "unknown-top-key.yaml": ":1: unknown key 'target' (allowed: server, defaults, max_concurrency, metrics, groups, "
    "targets)",
    "condition-syntax.yaml": ":6: targets[0] 'api' (http): degraded_if[0]: at column 35: syntax error: mismatched "
    "input '<EOF>'",
    "condition-unknown-name.yaml": ":5: targets[0] 'db' (postgres): degraded_if[0]: at column 1: unknown name "
    "'replication_lag' (this kind observes: connection_usage_ratio, connections_exact, connections_in_use, ",
    "condition-type-error.yaml": ":6: targets[0] 'api' (http): unhealthy_if[0]: type error: No such overload",
    "condition-unknown-function.yaml": ":5: targets[0] 'api' (http): unhealthy_if[0]: at column 1: unknown function "
    "len()",
    "condition-not-a-verdict.yaml": ":5: targets[0] 'cert' (tls): degraded_if[0]: a condition must be true or false; "
    "this one gives int",
    "condition-not-a-list.yaml": ":5: targets[0] 'cert' (tls): degraded_if: expected a list of CEL expressions, "
    "got str",
    "critical-components-alone.yaml": ":2: targets[0] 'api' (http): critical_components needs components: auto, "
    "terminus, spring or ietf",
    "group-unknown-target.yaml": ":6: groups.ready[1]: no target named 'api-ready'",
    "group-bad-selector.yaml": ":5: groups.ready[0]: unknown kind 'postgress'",
    "unreadable-ca-file.yaml": ":5: targets[0] 'cert' (tls): ca_file: cannot read '/nonexistent/ca.pem': "
    "No such file or directory",
    "unreadable-secret-file.yaml": ":5: targets[0] 'api' (http): bearer_token_file: cannot read "
    "'/nonexistent/prober-token': No such file or directory",
    "bad-websocket-url.yaml": ":4: targets[0] 'realtime' (websocket): url: expected a ws:// or wss:// URL with a host",
    "socketio-with-send.yaml": ":6: targets[0] 'realtime' (websocket): send: only with protocol: websocket",
    "bad-grpc-metadata.yaml": ":5: targets[0] 'orders' (grpc): metadata: 'X-Api-Key' is not a usable metadata key",
    "bad-dns-type.yaml": ":5: targets[0] 'db-dns' (dns): type: Input should be 'A', 'AAAA', 'CNAME', 'MX', 'TXT',",
    "unknown-dsn-parameter.yaml": ":4: targets[0] 'db' (postgres): dsn: unknown parameter 'conection_limit' "
    "(did you mean 'connection_limit'?)",
    "bad-start-period.yaml": ":2: defaults.start_period: expected a duration such as 500ms, 15s, 2m or 1h, got 60",
    # bounds on what a file may cost to load: each a clean error within a second
    "billion-laughs.yaml": ":7: invalid YAML: aliases expand to more than 100000 values",
    "alias-cycle.yaml": ":2: invalid YAML: an alias refers to a value that contains it",
    "nested-too-deep.yaml": ":65: invalid YAML: nested deeper than 64 levels",
    "flow-too-deep.yaml": ":2: invalid YAML: nested deeper than 64 levels",
    "huge-integer.yaml": ":2: invalid YAML: a number with more than 100 digits",
    "no-targets.yaml": ": no targets to probe: the config file names none",
    "bullmq-queue-name.yaml": ":5: targets[0] 'jobs' (bullmq): queues: queues[1]: a BullMQ queue name cannot contain "
    "':' (BullMQ refuses it), got 'mail:out'",
    "file-relative-path.yaml": ":4: targets[0] 'backups' (file): path: expected an absolute path or glob "
    "(/var/backups/db-*.dump), got 'backups/*.dump'",
    "newest-object-ages.yaml": ":8: targets[0] 's3-backups' (minio): newest_object: unhealthy_age (24h) must be "
    "longer than max_age (48h)",
    "mongodb-query-two-reads.yaml": ":5: targets[0] 'devices' (mongodb): query: set exactly one of count and find_one",
}


def test_every_invalid_file_has_an_expectation() -> None:
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_config(name: str) -> None:
    path = str(INVALID / name)
    with pytest.raises(ConfigError) as caught:
        config.load_file(path, environ={})
    expected = f"{path}{EXPECTED[name]}"
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_check_config_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "targets:\n"
        "  - {name: a, kind: tcp, address: nohost}\n"
        "  - {name: b, kind: http, url: 'http://x/', timeout: 1 second}\n"
        "  - {name: a, kind: tcp, address: 'h:1'}\n"
    )
    done = run_cli("check-config", "-c", str(bad))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{bad}:2: targets[0] 'a' (tcp): address:" in done.stderr
    assert f"{bad}:3: targets[1] 'b' (http): timeout:" in done.stderr
    assert f"{bad}:4: targets[2] 'a' (tcp): name: duplicate target name" in done.stderr
    assert "config error (3 problems)" in done.stderr


def test_check_config_on_a_missing_file() -> None:
    done = run_cli("check-config", "-c", "/nonexistent/prober.yaml")
    assert done.returncode == 2
    assert "/nonexistent/prober.yaml: cannot read the config file: No such file or directory" in done.stderr


def test_valid_config_with_defaults_and_interpolation() -> None:
    loaded = config.load_file(str(ROOT / "tests" / "configs" / "valid" / "full.yaml"), environ={})
    api, cert, smtp = loaded.targets
    assert isinstance(api, HttpTarget) and isinstance(smtp, TcpTarget)
    assert (api.interval, api.timeout, api.failure_threshold, api.degraded_latency) == (15, 5, 2, 0.3)
    assert smtp.interval == 90
    assert loaded.server.bearer_token is not None
    assert loaded.server.bearer_token.get_secret_value() == "dev-token"  # ${VAR:-default}
    assert cert.critical is True


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("", DURATION_BUCKETS),  # no metrics: section
        ("metrics:\n", DURATION_BUCKETS),
        ("metrics:\n  duration_buckets: [0.01, 1, 2.5]\n", (0.01, 1.0, 2.5)),
        ("metrics:\n  duration_buckets: []\n", ()),
    ],
)
def test_duration_buckets(tmp_path: Path, section: str, expected: tuple[float, ...]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(section + "targets: [{name: t, kind: tcp, address: '127.0.0.1:1'}]\n")
    assert config.load_file(str(path), environ={}).metrics.duration_buckets == expected


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("metrics: [1]", ":1: metrics: expected a mapping, got a list"),
        ("metrics:\n  buckets: [1]", ":2: metrics.buckets: unknown key (allowed: duration_buckets)"),
        ("metrics:\n  duration_buckets: 0.1, 1", ":2: metrics.duration_buckets: expected a list of seconds"),
        ("metrics:\n  duration_buckets:", ":2: metrics.duration_buckets: expected a list of seconds"),
        (
            "metrics:\n  duration_buckets:\n    - 0.1\n    - 1s",
            ":4: metrics.duration_buckets[1]: Input should be a valid",
        ),
        ("metrics:\n  duration_buckets: [0, 1]", ":2: metrics.duration_buckets[0]: Input should be greater than 0"),
        ("metrics:\n  duration_buckets: [-1]", ":2: metrics.duration_buckets[0]: Input should be greater than 0"),
        ("metrics:\n  duration_buckets: [true]", ":2: metrics.duration_buckets[0]: Input should be a valid number"),
        ("metrics:\n  duration_buckets: [1, .inf]", ":2: metrics.duration_buckets[1]: Input should be a finite"),
        ("metrics:\n  duration_buckets: [1, 1]", ":2: metrics.duration_buckets: bucket bounds must be strictly"),
    ],
)
def test_invalid_duration_buckets(tmp_path: Path, section: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(section + "\ntargets: []\n")
    with pytest.raises(ConfigError) as caught:
        config.load_file(str(path), environ={})
    assert caught.value.problems[0].startswith(f"{path}{expected}"), caught.value.problems


def test_example_configs_are_valid() -> None:
    paths = sorted((ROOT / "config").glob("*.yaml"))
    assert paths, "config/ holds the example configs"
    for path in paths:
        done = run_cli("check-config", "-c", str(path), env={"PROBER_CONFIG": ""})
        assert done.returncode == 0, (path, done.stderr)


def test_interpolation_and_escape(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "targets:\n"
        "  - name: api\n    kind: http\n    url: http://${APP_HOST}:${APP_PORT:-3000}/health\n"
        "    body_contains: 'costs $${PRICE}'\n"
    )
    loaded = config.load_file(str(path), environ={"APP_HOST": "10.1.2.3"})
    target = loaded.targets[0]
    assert isinstance(target, HttpTarget)
    assert target.url == "http://10.1.2.3:3000/health"
    assert target.body_contains == "costs ${PRICE}"


def test_secret_file_twin_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        "server:\n  bearer_token_file: token\n"
        "targets:\n  - {name: api, kind: http, url: 'http://127.0.0.1:1/', bearer_token_file: token}\n"
    )
    loaded = config.load_file(str(path), environ={})
    target = loaded.targets[0]
    assert isinstance(target, HttpTarget) and target.bearer_token is not None
    assert target.bearer_token.get_secret_value() == "from-a-file"
    assert "from-a-file" in loaded.secrets()
    assert "from-a-file" not in repr(target)


def test_zero_config_default_from_the_environment() -> None:
    environ = {
        "APP_READINESS_URL": "http://127.0.0.1:3000/api/health/ready",
        "APP_LIVENESS_URL": "http://127.0.0.1:3000/api/health/live",
        "TLS_CHECK_ADDRESSES": "example.com, api.example.com:8443",
    }
    loaded = config.load(None, environ)
    assert loaded.source == "<environment>"
    names = {t.name: t for t in loaded.targets}
    assert set(names) == {"app-ready", "app-live", "tls-example.com", "tls-api.example.com"}
    assert names["tls-api.example.com"].critical is False
    tls_target = names["tls-example.com"]
    assert isinstance(tls_target, TlsTarget) and tls_target.address == "example.com:443"


def test_zero_config_with_nothing_set_is_an_error_naming_where_it_looked() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(None, {})
    (problem,) = caught.value.problems
    assert problem.startswith("<environment>: no targets to probe: no config file (tried: -c FILE, $PROBER_CONFIG, ")
    looked = zeroconfig.variables_looked_for()
    assert {"DATABASE_URL", "REDIS_URL", "APP_READINESS_URL"} <= set(looked)
    assert f"(looked for: {', '.join(looked)})" in problem


def test_the_variables_looked_for_are_the_ones_zero_config_reads() -> None:
    """The list in the message is asked of from_environment itself: every variable in it is one the
    zero-config table documents, and every variable that can start a target on its own (not a companion
    such as PGPORT or REDIS_PASSWORD) is in it."""
    asked = zeroconfig.variables_looked_for()
    table = {variable.name: variable for variable in zeroconfig.ZERO_CONFIG_VARIABLES}
    assert set(asked) <= set(table), set(asked) - set(table)
    starters = {name for name, variable in table.items() if not variable.gives.startswith("with ")}
    assert starters - set(asked) <= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "AWS_REGION"}, (
        starters - set(asked)
    )
    assert zeroconfig.from_environment({"REDIS_HOST": "cache"}) != zeroconfig.from_environment({})


def test_prober_config_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("targets:\n  - {name: t, kind: tcp, address: '127.0.0.1:1'}\n")
    assert config.load(None, {"PROBER_CONFIG": str(path)}).source == str(path)


# --- files that are not plain config files ------------------------------------------------------------


def test_a_fifo_as_config_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "prober.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:  # opening a FIFO for reading would wait for a writer
        config.load_file(str(fifo), environ={})
    assert time.monotonic() - started < 1
    assert caught.value.problems == [f"{fifo}: cannot read the config file: a FIFO, not a regular file"]


def test_a_device_as_config_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_file("/dev/zero", environ={})
    assert caught.value.problems == ["/dev/zero: cannot read the config file: a character device, not a regular file"]


def test_a_config_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "prober.yaml"
    with big.open("wb") as out:
        out.truncate(config.MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError) as caught:
        config.load_file(str(big), environ={})
    assert caught.value.problems == [
        f"{big}: cannot read the config file: larger than {config.MAX_CONFIG_BYTES} bytes "
        f"({config.MAX_CONFIG_BYTES + 1} bytes)"
    ]


@pytest.mark.parametrize("kind", ["fifo", "device", "large"])
def test_secret_files_that_are_not_plain_files_are_refused(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(secret)
        expected = "a FIFO, not a regular file"
    elif kind == "device":
        secret.symlink_to("/dev/zero")
        expected = "a character device, not a regular file"
    else:
        secret.write_text("x" * (config.MAX_SECRET_BYTES + 1))
        expected = f"larger than {config.MAX_SECRET_BYTES} bytes"
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n  - name: api\n    kind: http\n    url: http://127.0.0.1:1/\n    bearer_token_file: token\n"
    )
    with pytest.raises(ConfigError) as caught:
        config.load_file(str(path), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:5: targets[0] 'api' (http): bearer_token_file: cannot read 'token': {expected}")


def test_check_config_on_a_fifo_exits_2_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "prober.yaml"
    os.mkfifo(fifo)
    done = run_cli("check-config", "-c", str(fifo), timeout=30)
    assert done.returncode == 2
    assert "a FIFO, not a regular file" in done.stderr and "Traceback" not in done.stderr


# --- a Kubernetes ConfigMap: ..data swapped while the config is read -----------------------------------


def _configmap_version(root: Path, version: int) -> Path:
    """A ConfigMap volume as the kubelet writes it: ..<version>/ with the files, ..data -> ..<version>,
    and each key a link through ..data."""
    directory = root / f"..{version}"
    directory.mkdir()
    (directory / "prober.yaml").write_text(
        f"targets:\n  - name: api-v{version}\n    kind: http\n    url: http://127.0.0.1:1/\n"
        "    bearer_token_file: token\n"
    )
    (directory / "token").write_text(f"token-of-version-{version}\n")
    return directory


def _swap(root: Path, version: int) -> None:
    """The kubelet's atomic swap: a new ..data link renamed over the old one."""
    _configmap_version(root, version)
    (root / "..data_tmp").symlink_to(f"..{version}")
    os.replace(root / "..data_tmp", root / "..data")


def test_a_configmap_swap_during_a_load_never_mixes_two_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configmap_version(tmp_path, 1)
    (tmp_path / "..data").symlink_to("..1")
    for key in ("prober.yaml", "token"):
        (tmp_path / key).symlink_to(f"..data/{key}")
    parse = config.parse_yaml
    version = iter(range(2, 100))

    def parse_then_swap(text: str, source: str) -> object:
        # the swap lands after the config text was read, before the secret files are
        _swap(tmp_path, next(version))
        return parse(text, source)

    monkeypatch.setattr(config, "parse_yaml", parse_then_swap)
    for _ in range(5):
        loaded = config.load_file(str(tmp_path / "prober.yaml"), environ={})
        (target,) = loaded.targets
        name_version = target.name.removeprefix("api-v")
        assert loaded.secrets() == [f"token-of-version-{name_version}"], "a config read with another version's secret"
