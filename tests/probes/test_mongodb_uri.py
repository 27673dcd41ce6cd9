"""The ``mongodb`` kind with the URIs Node.js applications really have: the Node driver's and Mongoose's
options (``retryWrites``, ``w``, ``appName``, ``useNewUrlParser``, ``sslValidate``, ...) accepted and
ignored or translated, pymongo's own applied, unknown ones a config error naming the nearest known option,
against nx-27017 (a real wire-protocol server; see tests/peers/mongodb.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes import mongodb as mongodb_probe
from prober.probes._params import names_by_treatment
from prober.probes.mongodb import MongodbTarget, driver_uri
from prober.runner import run_probe
from prober.status import State
from tests.helpers import ROOT
from tests.peers.mongodb import NxServer, nx_server


@pytest.fixture(scope="module")
def nx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NxServer]:
    with nx_server(tmp_path_factory.mktemp("nx-27017-uri")) as server:
        yield server


def target(uri: str, **fields: Any) -> MongodbTarget:
    return MongodbTarget.model_validate({"name": "mongo", "kind": "mongodb", "uri": uri, "timeout": "5s", **fields})


async def test_a_mongoose_uri_with_node_options_is_ok(nx: NxServer, ctx: ProbeContext) -> None:
    uri = (
        f"{nx.uri.rstrip('/')}/simplepro_prod?authSource=admin&retryWrites=true&w=majority&appName=simplepro"
        "&useNewUrlParser=true&useUnifiedTopology=true&maxPoolSize=50&serverSelectionTimeoutMS=30000"
        "&socketTimeoutMS=45000&family=4&readPreference=secondaryPreferred&keepAlive=true"
    )
    result = await run_probe(target(uri), ctx)
    assert result.state is State.OK, result.message


def test_only_what_pymongo_applies_reaches_it() -> None:
    uri = (
        "mongodb://u:p@h1:27017,h2:27017/db?authSource=admin&replicaSet=rs0&retryWrites=true&w=majority"
        "&useUnifiedTopology=true&sslCA=/etc/ssl/ca.pem&sslValidate=false&TLS=true"
    )
    assert driver_uri(uri) == (
        "mongodb://u:p@h1:27017,h2:27017/db?authSource=admin&replicaSet=rs0&tlsCAFile=%2Fetc%2Fssl%2Fca.pem"
        "&tlsAllowInvalidCertificates=true&TLS=true"
    )


@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("mongodb://app:hunter2pw@h/db?replicaSett=rs0", "unknown option 'replicaSett' (did you mean 'replicaSet'?)"),
        ("mongodb://app:hunter2pw@h/db?authsorce=admin", "did you mean 'authSource'?"),
        ("mongodb://app:hunter2pw@h/db?proxyHost=socks", "SOCKS5 proxy is not supported"),
        ("mongodb://app:hunter2pw@h/db?sslCert=/c.pem&sslKey=/k.pem", "use tlsCertificateKeyFile"),
        ("mongodb://app:hunter2pw@h/db?sslValidate=maybe", "sslValidate must be true or false"),
    ],
)
def test_bad_options_are_refused_without_echoing_the_uri(uri: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        target(uri)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert complaint in errors[0]["msg"], errors[0]["msg"]
    assert "hunter2pw" not in json.dumps(errors, default=str)


def test_key_file_password_is_a_secret() -> None:
    made = target("mongodb://h/?tls=true&tlsCertificateKeyFilePassword=Key-Pass-42")
    assert "Key-Pass-42" in made.secrets()


def test_the_kind_documentation_names_every_option() -> None:
    text = (ROOT / "docs" / "kinds" / "mongodb.md").read_text()
    for treatment, names in names_by_treatment(mongodb_probe.OPTIONS).items():
        for name in names:
            assert f"`{name}`" in text, f"docs/kinds/mongodb.md does not name the {treatment} {name}"
