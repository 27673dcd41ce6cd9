"""The ``minio`` and ``clickhouse`` kinds configured as their Node.js clients are: minio-js's ``endPoint`` (a
bare host) with ``port`` and ``useSSL`` against the real S3 server (SeaweedFS), and @clickhouse/client's URL
parameters (a run with them against the ClickHouse engine is in test_clickhouse.py, beside its fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes import clickhouse as clickhouse_probe
from prober.probes._params import names_by_treatment
from prober.probes.clickhouse import ClickhouseTarget
from prober.probes.minio import MinioTarget
from prober.runner import run_probe
from prober.status import State
from tests.helpers import ROOT
from tests.peers import minio as peers_minio
from tests.peers.minio import ACCESS_KEY, BUCKET, SECRET_KEY, Weed

weed = peers_minio.weed


def minio(**fields: Any) -> MinioTarget:
    return MinioTarget.model_validate({"name": "store", "kind": "minio", "timeout": "5s", **fields})


def clickhouse(url: str) -> ClickhouseTarget:
    return ClickhouseTarget.model_validate({"name": "ch", "kind": "clickhouse", "url": url, "timeout": "2s"})


@pytest.mark.parametrize(
    ("fields", "endpoint"),
    [
        ({"endpoint": "minio"}, "https://minio:443"),  # minio-js: useSSL defaults to true
        ({"endpoint": "minio", "use_ssl": False}, "http://minio:80"),
        ({"endpoint": "minio", "port": "9000", "use_ssl": "false"}, "http://minio:9000"),  # interpolated strings
        ({"endpoint": "minio:9000", "use_ssl": False}, "http://minio:9000"),
        ({"endpoint": "http://minio:9000"}, "http://minio:9000"),
    ],
)
def test_minio_endpoint_as_minio_js_takes_it(fields: dict[str, Any], endpoint: str) -> None:
    assert minio(**fields).endpoint == endpoint


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"endpoint": "http://minio:9000", "port": 9000}, "go with a bare host"),
        ({"endpoint": "minio:9000", "port": 9001}, "the port is written twice"),
        ({"endpoint": "minio/uploads"}, "expected a host, host:port"),
        ({"endpoint": "user:hunter2pw@minio"}, "put the keys in access_key"),
        ({"endpoint": "minio", "port": 0}, "greater than 0"),
    ],
)
def test_minio_endpoint_mistakes(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        minio(**fields)


async def test_minio_js_settings_against_a_real_s3_server(weed: Weed, ctx: ProbeContext) -> None:
    made = minio(
        endpoint="127.0.0.1",
        port=str(weed.port),
        use_ssl="false",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        bucket=BUCKET,
        health_endpoints=False,
    )
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://app:hunter2pw@ch:8123/db?request_timout=5", "unknown parameter 'request_timout' (did you mean"),
        ("http://app:hunter2pw@ch:8123/db?pathname=/ch", "path prefix is not supported"),
        ("http://ch:8123/db?access_token=hunter2pw", "JWT authentication is not supported"),
    ],
)
def test_clickhouse_url_mistakes_never_echo_the_url(url: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        clickhouse(url)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert complaint in errors[0]["msg"], errors[0]["msg"]
    assert "hunter2pw" not in json.dumps(errors, default=str)


def test_clickhouse_header_values_are_secrets() -> None:
    assert "Key-123-abc" in clickhouse("http://ch:8123/?http_header_X-ClickHouse-Key=Key-123-abc").secrets()


def test_the_clickhouse_documentation_names_every_parameter() -> None:
    text = (ROOT / "docs" / "kinds" / "clickhouse.md").read_text()
    for treatment, names in names_by_treatment(clickhouse_probe.PARAMS).items():
        for name in names:
            assert f"`{name}`" in text, f"docs/kinds/clickhouse.md does not name the {treatment} {name}"
