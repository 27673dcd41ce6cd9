"""The ``redis`` kind with the URLs applications really have (ioredis and BullMQ put every query parameter
into the client's options; redis-py reads a few): ``?family=``, ``?tls=true``, ``?db=``, pool and retry
tuning accepted and ignored, against real redis-server processes. Unknown parameters are config errors
naming the nearest known one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from prober.config import load_file
from prober.errors import ConfigError
from prober.probes import ProbeContext
from prober.probes import redis as redis_probe
from prober.probes._params import names_by_treatment
from prober.probes.redis import RedisTarget
from prober.runner import run_probe
from prober.status import Reason, State
from tests.helpers import ROOT
from tests.peers import redis as peers
from tests.peers.redis import Process, TlsFiles

redis_master = peers.redis_master
redis_tls = peers.redis_tls


def target(url: str, **fields: Any) -> RedisTarget:
    return RedisTarget.model_validate({"name": "cache", "kind": "redis", "url": url, "timeout": "2s", **fields})


async def test_bullmq_style_url_is_ok(ctx: ProbeContext, redis_master: Process) -> None:
    url = redis_master.url() + "/3?maxRetriesPerRequest=null&enableReadyCheck=false&connectTimeout=10000"
    result = await run_probe(target(url), ctx)
    assert result.state is State.OK, result.message
    assert "auth" in result.phases  # AUTH and SELECT 3


async def test_db_as_a_query_parameter(ctx: ProbeContext, redis_master: Process) -> None:
    made = target(redis_master.url() + "?db=2")
    assert made.connection.db == 2
    assert (await run_probe(made, ctx)).state is State.OK


async def test_family_is_honoured(ctx: ProbeContext, redis_master: Process) -> None:
    four = await run_probe(target(redis_master.url() + "?family=4"), ctx)
    assert four.state is State.OK, four.message
    # 127.0.0.1 has no IPv6 address: asked for family 6, the connection cannot even resolve it
    six = await run_probe(target(redis_master.url() + "?family=6"), ctx)
    assert (six.state, six.reason) == (State.UNHEALTHY, Reason.DNS), six.message


async def test_tls_true_is_tls(ctx: ProbeContext, redis_tls: tuple[Process, TlsFiles]) -> None:
    server, files = redis_tls
    result = await run_probe(target(server.url() + "?tls=true", ca_file=str(files.ca)), ctx)
    assert result.state is State.OK, result.message
    plain = await run_probe(target(server.url()), ctx)  # the same server without TLS: not a Redis answer
    assert plain.state is State.UNHEALTHY


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://:hunter2pw@h:6379?familly=4", "unknown parameter 'familly' (did you mean 'family'?)"),
        ("redis://:hunter2pw@h:6379?maxRetriesPerRequests=1", "did you mean 'maxRetriesPerRequest'?"),
        ("redis://:hunter2pw@h:6379?family=5", "family must be 4, 6 or 0"),
        ("rediss://:hunter2pw@h:6379?tls=false", "tls must be true or false (and not false"),
        ("redis://:hunter2pw@h:6379/1?db=2", "the same as the URL path's"),
        ("redis://:hunter2pw@h:6379?name=mymaster", "sentinels and master_name"),
        ("redis://h:6379?password=hunter2pw", "userinfo or the target's password"),
    ],
)
def test_bad_parameters_are_refused_without_echoing_the_url(url: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        target(url)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert complaint in errors[0]["msg"], errors[0]["msg"]
    assert "hunter2pw" not in json.dumps(errors, default=str)


def test_unknown_parameter_is_a_check_config_error(tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text("targets:\n  - name: queue\n    kind: redis\n    url: redis://:pw@redis:6379/0?famly=6\n")
    with pytest.raises(ConfigError) as caught:
        load_file(str(path), environ={})
    assert caught.value.problems == [
        f"{path}:4: targets[0] 'queue' (redis): url: unknown parameter 'famly' (did you mean 'family'?)"
    ]


def test_the_kind_documentation_names_every_parameter() -> None:
    text = (ROOT / "docs" / "kinds" / "redis.md").read_text()
    for treatment, names in names_by_treatment(redis_probe.PARAMS).items():
        for name in names:
            assert f"`{name}`" in text, f"docs/kinds/redis.md does not name the {treatment} {name}"
