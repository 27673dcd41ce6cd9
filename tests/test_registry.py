"""The registry of probes and the config union name the same kinds."""

from __future__ import annotations

import inspect
from typing import get_args

from prober.config import KIND_MODELS
from prober.metrics import GAUGES
from prober.probes import KINDS, MODULES, PROBES, Target


def test_registry_and_config_models_agree() -> None:
    assert set(PROBES) == set(KIND_MODELS)
    union = get_args(get_args(Target)[0])
    assert len(union) == len(PROBES)


def test_every_probe_has_the_shared_signature() -> None:
    for kind, probe in PROBES.items():
        assert inspect.iscoroutinefunction(probe), kind
        parameters = list(inspect.signature(probe).parameters)
        assert parameters == ["target", "ctx"], kind
        model = KIND_MODELS[kind]
        assert inspect.signature(probe).parameters["target"].annotation in (model.__name__, model), kind


def test_secret_fields_are_secret_types() -> None:
    for kind, model in KIND_MODELS.items():
        for name in model.SECRET_FIELDS:
            assert name in model.model_fields, (kind, name)
            assert "SecretStr" in str(model.model_fields[name].annotation), (kind, name)


def test_gauge_names_are_metric_safe() -> None:
    assert all(name.replace("_", "").isalnum() and name.islower() for name in GAUGES)


PUBLIC_NAMES = ("MODEL", "OBSERVES", "RULES", "WORDS", "BYTE_BUDGET", "classify", "probe")


def test_every_kind_module_has_the_same_public_names() -> None:
    for module in MODULES:
        missing = [name for name in PUBLIC_NAMES if not hasattr(module, name)]
        assert not missing, (module.__name__, missing)


def test_every_kind_says_where_it_points() -> None:
    """check-config and the start-up log name each target's endpoint, whatever its kind."""
    for name, kind in KINDS.items():
        assert "where" in vars(kind.model), f"{name}: its model does not say where it points"
