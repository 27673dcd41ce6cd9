"""Real processes for the deployment tests: PostgreSQL, Redis, the prober daemon, Prometheus and
Alertmanager, each on loopback on a free port with its data in a temporary directory, started by a
fixture and stopped by it. Plus the documented ``for:`` override and the configs derived from the
shipped files (deploy/README.md and deploy/prometheus/README.md describe both)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT, free_port, require, wait_for_port

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_YML = ROOT / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

# The documented override of the rules' `for:` durations (deploy/prometheus/README.md): one sed expression
# over the shipped file, so tests and demos run the very rules users deploy, only faster.
SHORTEN_FOR = r"sed -E 's/^( +for:) .*/\1 {duration}/' deploy/prometheus/alerts.yml"


def render_alerts(duration: str, destination: Path) -> Path:
    """Run the documented override (the README's sed command, verbatim) and write the result."""
    command = SHORTEN_FOR.format(duration=duration)
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, check=True)
    destination.write_text(done.stdout)
    return destination


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_until(condition: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{tail}")


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- PostgreSQL ------------------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Postgres:
    """A PostgreSQL cluster started with pg_ctl (as the postgres user when we are root)."""

    password: str = "Pg-S3cret-pw"
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prober-deploy-pg-")))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def init(self) -> Postgres:
        initdb = require("initdb")
        self.bin = Path(initdb).parent
        password_file = self.directory / "pwfile"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            shutil.chown(password_file, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [initdb, "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={password_file}"]
            ),
            check=True,
            capture_output=True,
        )
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"), "-w", "-o", options]
                + ["start"]
            ),
            check=True,
            capture_output=True,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


# --- Redis -----------------------------------------------------------------------------------


@dataclass
class Redis:
    password: str = "Redis-S3cret-pw"
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prober-deploy-redis-")))
    process: subprocess.Popen[bytes] | None = None
    start_args: list[str] = field(default_factory=list)  # more redis-server options (--replicaof, --maxmemory)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = require("redis-server")
        log = (self.directory / "log").open("ab")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.start_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


# --- the prober daemon -----------------------------------------------------------------------


class Prober:
    """``python -m prober run -c FILE`` as a subprocess (the real daemon, the real CLI)."""

    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        self.port = free_port()
        config = {**config, "server": {"listen": f"127.0.0.1:{self.port}"}}
        self.config_path = directory / "prober.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / "prober.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prober", "run", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        wait_until(lambda: self._alive() and http_get(f"{self.url}/healthz")[0] == 200, 30, "prober /healthz", self.log)

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the prober exited with {self.process.returncode}:\n{self.log.read_text()}")
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        return dict(json.loads(http_get(f"{self.url}/status")[1]))

    def stop(self) -> None:
        _stop(self.process)


# --- Prometheus ------------------------------------------------------------------------------


def prometheus_config(prober_address: str, rules: Path | None, alertmanager: str | None) -> dict[str, Any]:
    """The shipped prometheus.yml with 1 s intervals, the test's prober, rendered rules and Alertmanager.

    The shipped ``prober`` job is kept (its metrics path and settings) with its static target replaced;
    the ``prober-pods`` job is dropped: Debian's Prometheus is built without Kubernetes discovery and
    there is no Kubernetes API here."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "prober")
    job["static_configs"] = [{"targets": [prober_address]}]
    config["scrape_configs"] = [job]
    config["rule_files"] = [str(rules)] if rules is not None else []
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    return config


class Prometheus:
    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        binary = require("prometheus")
        self.port = free_port()
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={directory / 'tsdb'}"]
                + [f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: http_get(f"{self.url}/-/ready")[0] == 200, 60, "Prometheus /-/ready", self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        code, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        answer = json.loads(body) if body else {"status": "error", "error": f"HTTP {code}"}
        return answer

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return list(answer["data"]["result"])

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        alerts = self.api("alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]

    def stop(self) -> None:
        _stop(self.process)


# --- Alertmanager ----------------------------------------------------------------------------


def alertmanager_config(webhook: str, token_file: Path, wait: str = "1s") -> dict[str, Any]:
    """The shipped alertmanager.yml with every receiver pointed at the test's webhook (path = receiver
    name), Slack configs dropped (no network), the webhook token read from ``token_file``, and the
    routing tree kept with its timings shortened."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_YML.read_text())
    config.get("global", {}).pop("slack_api_url_file", None)

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = wait
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    for receiver in config["receivers"]:
        name = receiver["name"]
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [
            {
                "url": f"{webhook}/{name}",
                "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
            }
        ]
    return config


class Alertmanager:
    def __init__(self, config: dict[str, Any], directory: Path) -> None:
        binary = require("prometheus-alertmanager")
        self.port = free_port()
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = directory / "alertmanager.log"
        (directory / "am-data").mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.config_path}", f"--storage.path={directory / 'am-data'}"]
                + [f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: http_get(f"{self.url}/-/ready")[0] == 200, 60, "Alertmanager /-/ready", self.log)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def stop(self) -> None:
        _stop(self.process)


__all__ = [
    "ALERTS",
    "SHORTEN_FOR",
    "Alertmanager",
    "Postgres",
    "Prober",
    "Prometheus",
    "Redis",
    "alertmanager_config",
    "prometheus_config",
    "render_alerts",
    "wait_until",
]
