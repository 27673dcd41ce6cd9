"""Config loading: a table of invalid files with their expected messages, interpolation, secret files,
defaults, the zero-config default from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from prober import config
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
    path.write_text(section + "targets: []\n")
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


def test_zero_config_with_nothing_set_has_no_targets() -> None:
    assert config.load(None, {}).targets == ()


def test_prober_config_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("targets:\n  - {name: t, kind: tcp, address: '127.0.0.1:1'}\n")
    assert config.load(None, {"PROBER_CONFIG": str(path)}).source == str(path)
