"""Each shipped deployment file passes its real checker: promtool (config, rules, rule unit tests), amtool,
hadolint, the Compose specification schema, kubernetes-validate. Plus the facts the checkers cannot see:
the Dockerfile's install step really installs a working ``prober`` (built and installed the same way),
runbooks exist for every alert, and the documented ``for:`` override is the one the tests run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.stack import SHORTEN_FOR, Prober, render_alerts
from tests.helpers import ROOT, free_port, require, wait_for_port

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def alert_names() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["alert"] for group in document["groups"] for rule in group["rules"]]


# --- Prometheus ---------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    done = run(require("promtool"), "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


def test_promtool_rule_unit_tests() -> None:
    done = run(require("promtool"), "test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_cover_every_alert_firing_and_silent() -> None:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for name in alert_names():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no firing case"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no silent case"


def test_a_broken_rule_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: flip ProberDependencyDegraded's optional-target branch and they do."""
    broken = ALERTS.read_text().replace("(prober_target_critical == 0))", "(prober_target_critical == 1))", 1)
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts.test.yml").write_text((DEPLOY / "prometheus" / "alerts.test.yml").read_text())
    done = run(require("promtool"), "test", "rules", str(tmp_path / "alerts.test.yml"))
    assert done.returncode != 0
    assert "ProberDependencyDegraded" in done.stdout + done.stderr


def test_promtool_check_config(tmp_path: Path) -> None:
    """prometheus.yml passes promtool. Debian's promtool is built without Kubernetes service discovery:
    with it, the only complaint about the full file is kubernetes_sd_configs, and the file without the
    Kubernetes job is clean (upstream promtool accepts the whole file)."""
    promtool = require("promtool")
    full = run(promtool, "check", "config", "prometheus.yml")
    if full.returncode != 0:
        assert "field kubernetes_sd_configs not found" in full.stdout + full.stderr, full.stdout + full.stderr
        config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus.yml").read_text())
        config["scrape_configs"] = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" not in j]
        config["rule_files"] = [str(ROOT / f) for f in config["rule_files"]]
        stripped = tmp_path / "prometheus.yml"
        stripped.write_text(yaml.safe_dump(config))
        done = run(promtool, "check", "config", str(stripped))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    assert config["rule_files"] == ["deploy/prometheus/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert all(re.fullmatch("prober.*", name) for name in jobs)  # ProberDown matches job=~"prober.*"
    relabel = jobs["prober-pods"]["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep"} | {
        "regex": "true"
    } in relabel


def test_documented_for_override_is_the_one_the_tests_use(tmp_path: Path) -> None:
    """deploy/prometheus/README.md shows the exact command; it changes every for: and nothing else."""
    readme = (DEPLOY / "prometheus" / "README.md").read_text()
    assert SHORTEN_FOR.format(duration="1s") in readme
    fast = render_alerts("1s", tmp_path / "alerts.fast.yml")
    original, shortened = yaml.safe_load(ALERTS.read_text()), yaml.safe_load(fast.read_text())
    for before, after in zip(original["groups"][0]["rules"], shortened["groups"][0]["rules"], strict=True):
        assert after["for"] == "1s"
        assert {k: v for k, v in before.items() if k != "for"} == {k: v for k, v in after.items() if k != "for"}
    done = run(require("promtool"), "check", "rules", str(fast))
    assert done.returncode == 0, done.stdout


def test_every_alert_has_a_runbook() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    for rule in (r for group in document["groups"] for r in group["rules"]):
        path = ROOT / rule["annotations"]["runbook_url"]
        assert path == ROOT / "docs" / "runbooks" / f"{rule['alert']}.md"
        text = path.read_text()
        for heading in ("## What it means", "## How to confirm", "## What to do first"):
            assert heading in text, (path, heading)


# --- Alertmanager -------------------------------------------------------------------------------


def test_amtool_check_config() -> None:
    done = run(require("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_amtool_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(
        (DEPLOY / "alertmanager" / "alertmanager.yml").read_text().replace("receiver: team", "receiver: nobody")
    )
    done = run(require("amtool"), "check-config", str(broken))
    assert done.returncode != 0


def test_alertmanager_routes_by_severity_and_reads_secrets_from_files() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    route = config["route"]
    assert "target" in route["group_by"]
    by_severity = {r["matchers"][0]: r["receiver"] for r in route["routes"]}
    assert by_severity == {'severity = "critical"': "oncall", 'severity = "warning"': "team"}
    text = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    assert "credentials_file:" in text and "slack_api_url_file:" in text
    assert not re.search(r"^\s*(api_url|credentials|password):", text, re.M)  # no inline secret


# --- Docker -------------------------------------------------------------------------------------


def test_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        require("hadolint")
    done = run(str(hadolint), str(ROOT / "Dockerfile"))
    assert done.returncode == 0, done.stdout + done.stderr


def dockerfile_stages() -> list[list[str]]:
    lines = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines()
    stages: list[list[str]] = []
    for line in (raw.strip() for raw in lines):
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_facts() -> None:
    build, runtime = dockerfile_stages()
    assert build[0].startswith("FROM ${PYTHON_IMAGE} AS build")
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert (
        'HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["prober", "healthcheck"]'
        in runtime
    )
    assert 'ENTRYPOINT ["prober"]' in runtime  # exec form: the daemon is PID 1 and gets SIGTERM
    assert "EXPOSE 9478" in runtime
    assert "USER 10001:10001" in runtime  # numeric: Kubernetes runAsNonRoot can verify it
    assert any("PYTHONDONTWRITEBYTECODE=1" in line for line in runtime)
    assert any("org.opencontainers.image.title" in line for line in runtime)
    assert not any(re.search(r"\b(apt-get|gcc|build-essential|curl)\b", line) for line in runtime)


def pip_commands(stage: list[str]) -> list[str]:
    """The ``pip ...`` commands of a stage's RUN lines (``&&``-joined commands split apart)."""
    found = []
    for line in stage:
        if line.startswith("RUN "):
            found += [
                part.strip() for part in line.split("&&") if re.match(r"^(RUN )?(--mount=\S+\s+)?pip ", part.strip())
            ]
    return [re.sub(r"^(RUN )?(--mount=\S+\s+)?", "", command) for command in found]


def test_dockerfile_installs_the_locked_dependencies_by_hash() -> None:
    build, runtime = dockerfile_stages()
    assert any("--require-hashes" in c and "-r requirements.lock" in c for c in pip_commands(build))
    assert any("--require-hashes" in c and "--no-index" in c for c in pip_commands(runtime))
    assert all("--require-hashes" in c or "--no-deps" in c for c in pip_commands(runtime))


def test_dockerfile_install_step_yields_a_working_prober(tmp_path: Path) -> None:
    """Do what the Dockerfile does, without Docker: COPY the build stage's files, run its pip commands (the
    dependencies' wheels checked against requirements.lock's hashes, the project's wheel), then the runtime
    stage's pip commands (offline, from those wheels) in a fresh Python 3.11 venv, and run the installed
    `prober`: --version, and the HEALTHCHECK command against a live daemon and a dead port. Needs the
    package registry for the dependencies' wheels (pip's cache is allowed here)."""
    build, runtime = dockerfile_stages()
    source = tmp_path / "src"
    source.mkdir()
    for line in build:
        if line.startswith("COPY "):
            *names, destination = line.split()[1:]
            for name in names:
                target = source / (name if destination.endswith("/") else destination)
                if (ROOT / name).is_dir():
                    subprocess.run(["cp", "-r", str(ROOT / name), str(target)], check=True)
                else:
                    target.write_bytes((ROOT / name).read_bytes())
    wheels = tmp_path / "wheels"
    for command in pip_commands(build):
        command = command.replace("/wheels", str(wheels)).replace("--no-cache-dir ", "")
        done = run("bash", "-c", f"{sys.executable} -m {command}", cwd=source, timeout=900)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    for command in pip_commands(runtime):
        command = command.replace("/tmp/requirements.lock", str(source / "requirements.lock"))
        done = run("bash", "-c", f"{python} -m {command.replace('/wheels', str(wheels))}", timeout=600)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    prober = env_dir / "bin" / "prober"
    version = run(str(prober), "--version")
    assert version.returncode == 0 and version.stdout.startswith("prober "), version
    daemon = Prober({"targets": [{"name": "self", "kind": "tcp", "address": "127.0.0.1:1"}]}, tmp_path)
    try:
        healthy = run(str(prober), "healthcheck", "--url", f"{daemon.url}/healthz")
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    finally:
        daemon.stop()
    dead = run(str(prober), "healthcheck", "--url", f"http://127.0.0.1:{free_port()}/healthz")
    assert dead.returncode == 1
    assert_the_installed_page_is_served(prober, tmp_path)


def assert_the_installed_page_is_served(prober: Path, tmp_path: Path) -> None:
    """The wheel carries the status page's templates and static files (package data): the installed daemon,
    run from a directory without the source, serves the page and every asset it links."""
    import urllib.request

    port = free_port()
    config = tmp_path / "page.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:{port}'}}\ntargets:\n  - {{name: self, kind: tcp, address: '127.0.0.1:1'}}\n"
    )
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    daemon = subprocess.Popen(
        [str(prober), "run", "-c", str(config)], cwd=empty, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            html = answer.read().decode()
        assert 'data-name="self"' in html
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert len(assets) == 3, assets  # favicon, stylesheet, script
        for asset in assets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{asset}", timeout=10) as answer:
                assert answer.status == 200 and answer.read()
    finally:
        daemon.terminate()
        daemon.wait(10)


# --- Compose ------------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
COMPOSE_SCHEMA = DEPLOY / "compose" / "compose-spec.json"


def check_jsonschema(document: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "check-jsonschema"
    return run(str(binary), "--schemafile", str(COMPOSE_SCHEMA), str(document))


def test_compose_file_matches_the_compose_specification() -> None:
    done = check_jsonschema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_rejects_a_wrong_file(tmp_path: Path) -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["prober"]["healthcheck"]["retry"] = 3  # a typo of retries
    wrong = tmp_path / "docker-compose.yml"
    wrong.write_text(yaml.safe_dump(document))
    assert check_jsonschema(wrong).returncode != 0


def test_compose_stack_is_the_sidecar_example() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    services = document["services"]
    expected = {"app", "postgres", "mongodb", "redis", "minio", "clickhouse", "prober", "prometheus", "alertmanager"}
    assert expected | {"grafana"} <= set(services)
    assert services["prober"]["network_mode"] == "service:app"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        assert "healthcheck" in service, name
        assert service["deploy"]["resources"]["limits"]["memory"], name
        for value in (service.get("environment") or {}).values():
            assert "PASSWORD" not in str(value).upper() or "/run/secrets" in str(value), (name, value)
    assert all(secret["file"].startswith("./secrets/") for secret in document["secrets"].values())
    assert services["prober"]["read_only"] is True


def test_compose_prober_config_is_valid(tmp_path: Path) -> None:
    """The prober config the compose example mounts passes `prober check-config` (secrets from files)."""
    for name in ("postgres_password", "redis_password", "mongodb_password", "minio_secret_key", "clickhouse_password"):
        (tmp_path / name).write_text("not-a-real-secret\n")
    done = subprocess.run(
        [sys.executable, "-m", "prober", "check-config", "-c", str(DEPLOY / "compose" / "prober.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PROBER_SECRETS_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 targets" in done.stdout
    assert "not-a-real-secret" not in done.stdout + done.stderr


# --- Kubernetes ---------------------------------------------------------------------------------

K8S = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def test_kubernetes_validate() -> None:
    """kubernetes-validate --strict passes every built-in kind; the PodMonitor CRD has no bundled schema
    (it warns and is checked structurally below)."""
    binary = Path(sys.executable).parent / "kubernetes-validate"
    done = run(str(binary), "--strict", *map(str, K8S))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for kind in ("configmap", "deployment", "secret", "service"):
        assert re.search(rf"passed for resource {kind}/", output), (kind, output)
    assert "Couldn't find schema for kind PodMonitor" in output
    assert "ERROR" not in output


def test_kubernetes_validate_rejects_a_wrong_manifest(tmp_path: Path) -> None:
    document = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    document["spec"]["template"]["spec"]["containers"][1]["livenessProbe"]["httpGet"]["port"] = {"name": 1}
    wrong = tmp_path / "deployment.yaml"
    wrong.write_text(yaml.safe_dump(document))
    binary = Path(sys.executable).parent / "kubernetes-validate"
    assert run(str(binary), "--strict", str(wrong)).returncode != 0


def test_kubernetes_sidecar_facts() -> None:
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]
    prober = next(c for c in pod["spec"]["containers"] if c["name"] == "prober")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert prober["securityContext"]["readOnlyRootFilesystem"] is True
    assert prober["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert prober["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert prober["readinessProbe"]["httpGet"]["path"] == "/readyz"
    app = next(c for c in pod["spec"]["containers"] if c["name"] == "app")
    assert app["livenessProbe"]["httpGet"] == {"path": "/status/live", "port": 9478}
    assert app["readinessProbe"]["httpGet"] == {"path": "/status/ready", "port": 9478}
    groups = yaml.safe_load(
        yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())["data"]["prober.yaml"]
    )["groups"]
    assert groups["live"] == ["app"] and {"app", "postgres"} <= set(groups["ready"])
    port = prober["ports"][0]
    assert port == {"name": "prober-metrics", "containerPort": 9478}
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    podmonitor = yaml.safe_load((DEPLOY / "kubernetes" / "podmonitor.yaml").read_text())
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == port["name"]
    assert podmonitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    config = yaml.safe_load(configmap["data"]["prober.yaml"])
    secret = yaml.safe_load((DEPLOY / "kubernetes" / "secret.example.yaml").read_text())
    for target in config["targets"]:
        if "password_file" in target:
            assert Path(target["password_file"]).name in secret["stringData"], target["name"]


def test_kubernetes_prober_config_is_valid(tmp_path: Path) -> None:
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    text = configmap["data"]["prober.yaml"].replace("/etc/prober/secrets/", f"{secrets}/")
    for name in ("postgres-password", "redis-password"):
        (secrets / name).write_text("not-a-real-secret\n")
    (tmp_path / "prober.yaml").write_text(text)
    done = run(sys.executable, "-m", "prober", "check-config", "-c", str(tmp_path / "prober.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


# --- Grafana ------------------------------------------------------------------------------------


def test_grafana_provisioning_files() -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "prober.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    for needed in ("Overall status", "Targets", "State over time", "Probe latency p95 per target"):
        assert needed in titles
    for needed in ("Latency per phase (last run)", "Failed runs by reason", "Certificate days left"):
        assert needed in titles
    assert {"Replication lag", "Usage ratios"} <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml")), ids=str)
def test_yaml_files_parse(path: Path) -> None:
    assert yaml.safe_load(path.read_text()) is not None
