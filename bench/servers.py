"""The processes the benchmark starts, each on loopback with its files in a temporary directory, and
the /proc readings it takes of them. Every class has ``stop()``; :class:`Stack` stops all it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import trustme

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads, children excluded), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2.42 sends


def http_get(url: str, timeout: float = 30.0, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Proc:
    """A subprocess we started; stopped with SIGTERM (then SIGKILL) by its own pid."""

    def __init__(self, argv: list[str], dir: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
            )
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Stack:
    """Owns a temporary directory and every process started in it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="prober-bench-"))
        self.procs: list[Proc] = []

    def start(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(argv, self.dir, name, env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- nginx: HTTP and TLS targets ----------------------------------------------------------------

NGINX = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log error;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_timeout 0;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {{
    listen 127.0.0.1:{port} backlog=8192;
    listen 127.0.0.1:{tls_port} ssl backlog=8192;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    location /health {{ default_type application/json; return 200 '{{"status":"ok"}}'; }}
  }}
}}
"""


class Nginx:
    """nginx (one worker) serving /health on a plain port and on a TLS port with a trustme certificate."""

    def __init__(self, stack: Stack) -> None:
        self.port, self.tls_port = free_port(), free_port()
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file = stack.dir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(stack.dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(stack.dir / "server.pem"))
        config = stack.dir / "nginx.conf"
        config.write_text(NGINX.format(dir=stack.dir, port=self.port, tls_port=self.tls_port))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = stack.start([binary, "-c", str(config), "-p", str(stack.dir)], "nginx")
        wait_port(self.port)
        wait_port(self.tls_port)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.port}/health?i={index}"


# --- blackbox_exporter and the Prometheus that drives it ---------------------------------------

BLACKBOX = """
modules:
  http_health:
    prober: http
    timeout: {timeout}s
    http:
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ['"status": *"ok"']
  tcp_connect:
    prober: tcp
    timeout: {timeout}s
    tcp:
      preferred_ip_protocol: ip4
  tls_connect:
    prober: tcp
    timeout: {timeout}s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: {ca_file}
        server_name: localhost
"""


class Blackbox:
    def __init__(self, stack: Stack, ca_file: Path, timeout: float, name: str = "blackbox") -> None:
        self.port = free_port()
        config = stack.dir / f"{name}.yml"
        config.write_text(BLACKBOX.format(timeout=timeout, ca_file=ca_file))
        self.proc = stack.start(
            [
                "/usr/bin/prometheus-blackbox-exporter",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            name,
        )
        wait_port(self.port)


class Prometheus:
    """A real Prometheus scraping blackbox_exporter's /probe once per interval for every target of each job."""

    def __init__(
        self, stack: Stack, blackbox_port: int, jobs: dict[str, tuple[str, list[str]]], interval: float, timeout: float
    ) -> None:
        self.port = free_port()
        scrape = [
            {
                "job_name": job,
                "metrics_path": "/probe",
                "params": {"module": [module]},
                # one static config per target, with its own label: identical addresses stay distinct targets
                "static_configs": [{"targets": [t], "labels": {"i": str(k)}} for k, t in enumerate(targets)],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{blackbox_port}"},
                ],
            }
            for job, (module, targets) in jobs.items()
        ]
        document = {
            "global": {
                "scrape_interval": f"{int(interval * 1000)}ms",
                "scrape_timeout": f"{int(timeout * 1000)}ms",
                "evaluation_interval": "1m",
            },
            "scrape_configs": scrape,
        }
        name = f"prometheus-{self.port}"
        config = stack.dir / f"{name}.yml"
        config.write_text(json.dumps(document))  # JSON is YAML
        data = stack.dir / f"{name}-data"
        self.proc = stack.start(
            [
                "/usr/bin/prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=error",
            ],
            name,
        )
        wait_port(self.port)

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?{params}")
        document = json.loads(body)
        if status != 200 or document.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body[:300]!r}")
        result: list[dict[str, Any]] = document["data"]["result"]
        return result

    def scalar(self, promql: str, at: float) -> float:
        result = self.query(promql, at)
        return float(result[0]["value"][1]) if result else 0.0


# --- the prober daemon --------------------------------------------------------------------------


class Prober:
    """``python -m prober run -c CONFIG`` (optionally on uvloop: ``PROBER_UVLOOP=1``)."""

    def __init__(
        self,
        stack: Stack,
        targets: list[dict[str, Any]],
        name: str = "prober",
        uvloop: bool = False,
        max_concurrency: int | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.port = free_port()
        document: dict[str, Any] = {"server": {"listen": f"127.0.0.1:{self.port}"}, "targets": targets}
        if max_concurrency is not None:
            document["max_concurrency"] = max_concurrency
        if metrics is not None:
            document["metrics"] = metrics
        config = stack.dir / f"{name}.yaml"
        config.write_text(json.dumps(document))
        env = {"PROBER_UVLOOP": "1"} if uvloop else {}  # the daemon's own opt-in (README, "Performance")
        argv = [sys.executable, "-m", "prober", "run", "-c", str(config), "--log-level", "warning"]
        self.proc = stack.start(argv, name, env)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"prober exited: {self.proc.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return time.perf_counter() - self.proc.started
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("prober did not start listening")

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.01) -> float:
        """Seconds from the process start until /readyz says every target has a result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"prober exited: {self.proc.log.read_text()[-2000:]}")
            try:
                status, _ = http_get(f"{self.base}/readyz", timeout=5)
                if status == 200:
                    return time.perf_counter() - self.proc.started
            except OSError:
                pass
            time.sleep(poll)
        raise RuntimeError("prober did not become ready")

    def metrics(self, accept: str | None = None) -> tuple[str, float]:
        """The /metrics text and the wall time of the request."""
        started = time.perf_counter()
        status, body = http_get(f"{self.base}/metrics", timeout=60, accept=accept)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode(), elapsed

    def status(self) -> dict[str, Any]:
        _, body = http_get(f"{self.base}/status", timeout=30)
        document: dict[str, Any] = json.loads(body)
        return document


def parse_metrics(text: str, names: set[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the named metrics from the Prometheus text format (enough for our own output)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in names}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        if name not in found:
            continue
        labels: dict[str, str] = {}
        for part in rest.rstrip("}").split('",'):
            if "=" in part:
                key, _, raw = part.partition("=")
                labels[key.strip(",")] = raw.strip('"')
        found[name].append((labels, float(value)))
    return found


# --- PostgreSQL and Redis -----------------------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


class Postgres:
    """A real PostgreSQL (scram-sha-256) run as the postgres user, data in a directory of its own."""

    def __init__(self, stack: Stack) -> None:
        import pwd

        self.bindir = _pg_bin()
        self.port = free_port()
        self.password = "bench-" + os.urandom(6).hex()
        self.base = Path(tempfile.mkdtemp(prefix="prober-bench-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.base, user.pw_uid, user.pw_gid)
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, user.pw_uid, user.pw_gid)
        self.data = self.base / "data"
        self._as_pg(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "--locale=C",
            ]
        )
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_pg(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-w"]
            + ["-o", options, "start"]
        )

    @staticmethod
    def _as_pg(argv: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, cwd="/")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def client_backends(self) -> int:
        """Client connections other than this query's own."""
        sql = "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()"
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-Atc", sql],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    def stop(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            capture_output=True,
            cwd="/",
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


class Redis:
    def __init__(self, stack: Stack) -> None:
        self.port = free_port()
        self.password = "bench-" + os.urandom(6).hex()
        self.proc = stack.start(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(stack.dir),
            ],
            "redis",
        )
        wait_port(self.port)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def other_clients(self) -> int:
        out = subprocess.run(
            [
                "redis-cli",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--no-auth-warning",
                "-a",
                self.password,
                "CLIENT",
                "LIST",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return sum(1 for line in out.stdout.splitlines() if line and "cmd=client|list" not in line)
