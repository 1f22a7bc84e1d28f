"""The hyperparameter schema: typed values survive the trip through strings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sm_imgclf as smi
from sm_imgclf.contracts.hyperparameters import PARAMS
from sm_imgclf.contracts.schema import Param


def values_for(param: Param) -> st.SearchStrategy[object]:
    if param.choices:
        return st.sampled_from(param.choices)
    if param.kind is int:
        return st.integers(int(param.low or 0), int(min(param.high or 2**31, 2**31 - 1)))
    low, high = param.low or 0.0, param.high if param.high is not None else 1e6
    return st.floats(
        low, high, exclude_min=param.low_open, exclude_max=param.high_open, allow_nan=False
    )


hyperparameters = st.fixed_dictionaries({p.name: values_for(p) for p in PARAMS})


@given(hyperparameters)
def test_round_trip_through_strings(values: dict[str, object]) -> None:
    hp = smi.Hyperparameters.from_dict(values)
    strings = hp.to_strings()
    assert all(isinstance(v, str) for v in strings.values())
    assert smi.Hyperparameters.from_strings(strings) == hp


@given(hyperparameters)
def test_sagemaker_json_quoted_strings_parse(values: dict[str, object]) -> None:
    hp = smi.Hyperparameters.from_dict(values)
    quoted = {k: f'"{v}"' for k, v in hp.to_strings().items()}
    assert smi.Hyperparameters.from_strings(quoted) == hp


def test_types_are_real() -> None:
    hp = smi.Hyperparameters.from_strings({"batch_size": '"64"', "lr": "0.0034"})
    assert hp.batch_size == 64 and isinstance(hp.batch_size, int)
    assert hp.lr == 0.0034 and isinstance(hp.lr, float)
    assert smi.Hyperparameters(lr=1).lr == 1.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": 0}, r"lr must be a number in \(0, 10\]; got 0.0"),
        ({"lr": math.nan}, "lr must be a number"),
        ({"batch_size": 0}, r"batch_size must be an integer in \[1, 8192\]; got 0"),
        ({"batch_size": 32.5}, "batch_size must be an integer"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"optimizer": "adamm"}, "Did you mean 'adam'"),
        ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\)"),
        ({"lr_schedule": "linear"}, "one of \\['none', 'step', 'cosine'\\]"),
        ({"bach_size": 32}, "Did you mean 'batch_size'"),
    ],
)
def test_bad_values_name_parameter_range_and_value(values: dict[str, object], message: str) -> None:
    with pytest.raises(smi.ConfigurationError, match=message):
        smi.Hyperparameters.from_dict(values)


def test_bad_strings() -> None:
    with pytest.raises(smi.ConfigurationError, match=r"epochs must be an integer.*'ten'"):
        smi.Hyperparameters.from_strings({"epochs": "ten"})
    with pytest.raises(smi.ConfigurationError, match=r"epochs must be an integer.*2\.5"):
        smi.Hyperparameters.from_strings({"epochs": "2.5"})


def test_dataclass_and_schema_declare_the_same_defaults() -> None:
    from dataclasses import fields

    declared = {f.name: f.default for f in fields(smi.Hyperparameters)}
    assert declared == {p.name: p.default for p in PARAMS}
    assert {f.name: f.type for f in fields(smi.Hyperparameters)} == {
        p.name: p.kind.__name__ for p in PARAMS
    }
