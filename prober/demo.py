"""``prober demo``: a sample application next to the daemon, so a fresh machine shows something real.

It starts, on loopback, an HTTP application with the health endpoints real frameworks serve (NestJS
style JSON, Spring's ``{"status":"UP"}``, plain text, one that reports itself degraded) and a TLS
endpoint whose certificate expires in 5 days, writes a config probing them plus an optional cache
that is down, and runs the daemon on it. Within seconds the status page (``/``, whose address it prints)
and ``/status`` show ok, degraded and unhealthy targets, two health groups, the components the health
bodies report, and an overall ``degraded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
import tempfile
from pathlib import Path

from aiohttp import web

from prober.config import load_file
from prober.daemon import Daemon
from prober.errors import ConfigError

log = logging.getLogger("prober.demo")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_app() -> web.Application:
    async def live(_r: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def ready(_r: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "info": {"database": {"status": "up"}, "redis": {"status": "up"}}, "uptime": 42}
        )

    async def spring(_r: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "components": {"db": {"status": "UP"}}})

    async def reports(_r: web.Request) -> web.Response:
        return web.json_response({"status": "degraded", "info": {"clickhouse": {"status": "down"}}})

    app = web.Application()
    app.router.add_get("/api/health/live", live)
    app.router.add_get("/api/health/ready", ready)
    app.router.add_get("/actuator/health", spring)
    app.router.add_get("/reports/health", reports)
    return app


def _certificates(cert_dir: Path, days: int) -> tuple[Path, Path]:
    """A throwaway CA (written as demo-ca.pem, which the demo config trusts) and a leaf certificate for
    localhost and 127.0.0.1 that expires in ``days`` days: the leaf's chain file and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        until: datetime.datetime,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("prober demo CA", "prober demo CA", ca_key, ca_key, now + datetime.timedelta(days=365), ca=True)
    leaf = build("localhost", "prober demo CA", leaf_key, ca_key, now + datetime.timedelta(days=days), ca=False)
    pem = serialization.Encoding.PEM
    (cert_dir / "demo-ca.pem").write_bytes(ca.public_bytes(pem))
    chain, key = cert_dir / "demo-leaf.pem", cert_dir / "demo-leaf.key"
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return chain, key


async def _tls_server(port: int, cert_dir: Path) -> asyncio.Server:
    """A TLS endpoint whose certificate expires in 5 days (the prober turns it degraded at 14)."""
    chain, key = _certificates(cert_dir, days=5)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key)

    async def close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(close, "127.0.0.1", port, ssl=context)


def _config(app_port: int, tls_port: int, closed_port: int, cert_dir: Path) -> str:
    base = f"http://127.0.0.1:{app_port}"
    return f"""# written by `prober demo`
defaults:
  interval: 5s
  timeout: 2s
groups:
  live: [app-live]
  ready: [app-ready, spring-health, critical:true]
targets:
  - name: app-live
    kind: http
    url: {base}/api/health/live
  - name: app-ready
    kind: http
    url: {base}/api/health/ready
    body_status_field: status
    components: auto
    degraded_latency: 300ms
  - name: spring-health
    kind: http
    url: {base}/actuator/health
    body_status_field: status
    components: auto
  - name: reports
    kind: http
    critical: false
    url: {base}/reports/health
    body_status_field: status
    components: auto
  - name: site-cert
    kind: tls
    address: 127.0.0.1:{tls_port}
    server_name: localhost
    ca_file: {cert_dir / "demo-ca.pem"}
  - name: cache
    kind: tcp
    critical: false
    address: 127.0.0.1:{closed_port}
"""


async def _demo(listen: str) -> int:
    with tempfile.TemporaryDirectory(prefix="prober-demo-") as tmp:
        work = Path(tmp)
        app_port, tls_port, closed_port = _free_port(), _free_port(), _free_port()
        runner = web.AppRunner(sample_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", app_port).start()
        tls = await _tls_server(tls_port, work)
        path = work / "prober.yaml"
        path.write_text(_config(app_port, tls_port, closed_port, work))
        log.info("demo: sample application on http://127.0.0.1:%d, TLS endpoint on 127.0.0.1:%d", app_port, tls_port)
        page = "http://" + listen.replace("0.0.0.0", "127.0.0.1", 1) + "/"
        log.info("demo: the status page is at %s  (JSON: %sstatus, metrics: %smetrics)", page, page, page)
        print(f"prober demo: open {page} in a browser", flush=True)
        try:
            config = load_file(str(path))
        except ConfigError as exc:  # pragma: no cover - the demo config is ours
            log.error("demo config invalid: %s", exc)
            return 2
        try:
            return await Daemon(str(path), listen=listen).run(config)
        finally:
            tls.close()
            with contextlib.suppress(Exception):
                await runner.cleanup()


def demo(listen: str) -> int:
    return asyncio.run(_demo(listen))
