"""The central (sharded) Kubernetes deployment: valid manifests, shard settings that agree, a config the
prober accepts, and a scrape config that finds every replica."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import ROOT, run_cli

CENTRAL = ROOT / "deploy" / "kubernetes" / "central"
MANIFESTS = sorted(CENTRAL.glob("*.yaml"))


def test_kubernetes_validate_strict() -> None:
    binary = Path(sys.executable).parent / "kubernetes-validate"
    done = subprocess.run([str(binary), "--strict", *map(str, MANIFESTS)], capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for kind in ("configmap", "statefulset", "service"):
        assert re.search(rf"passed for resource {kind}/", output), (kind, output)


def test_shard_settings_agree() -> None:
    statefulset = yaml.safe_load((CENTRAL / "statefulset.yaml").read_text())
    service = yaml.safe_load((CENTRAL / "service.yaml").read_text())
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env["PROBER_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(env["PROBER_SHARD_COUNT"]["value"]) == statefulset["spec"]["replicas"]
    assert service["spec"]["clusterIP"] == "None"  # headless
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_configmap_is_a_valid_prober_config(tmp_path: Path) -> None:
    configmap = yaml.safe_load((CENTRAL / "configmap.yaml").read_text())
    path = tmp_path / "prober.yaml"
    path.write_text(configmap["data"]["prober.yaml"])
    done = run_cli("check-config", "-c", str(path))
    assert done.returncode == 0, done.stderr


def test_scrape_config_keeps_the_headless_service_endpoints() -> None:
    scrape = yaml.safe_load((CENTRAL / "prometheus-scrape.yml").read_text())["scrape_configs"][0]
    assert scrape["job_name"].startswith("prober")  # ProberDown watches jobs named prober*
    keep = scrape["relabel_configs"][0]
    service = yaml.safe_load((CENTRAL / "service.yaml").read_text())
    port = service["spec"]["ports"][0]["name"]
    assert keep["action"] == "keep" and keep["regex"] == f"{service['metadata']['name']};{port}"
