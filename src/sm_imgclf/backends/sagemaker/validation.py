"""Check a SageMaker request against the whole service model before it is sent.

botocore checks types, required members and minimums. The service also
refuses values longer than a shape's ``max``, outside its range, off its
``pattern`` or outside its ``enum``, and a few combinations its documentation
states. This module walks the request along botocore's own shapes, so members
added to the service model are covered as they appear, then applies those
documented rules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

# Java character classes the service model uses, and their nearest Python spelling.
_JAVA_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\d", r"\p{Z}": r"\s", r"\p{Alnum}": "a-zA-Z0-9"}
_NUMBERS = frozenset({"integer", "long", "float", "double"})


def problems(request: Any, shape: Any, path: str = "") -> list[str]:
    """Every way ``request`` breaks ``shape`` (a botocore shape), each naming its member."""
    kind = shape.type_name
    if kind == "structure" and isinstance(request, dict):
        return [
            p
            for name, member in shape.members.items()
            if name in request
            for p in problems(request[name], member, f"{path}.{name}".lstrip("."))
        ]
    found = _bounds(request, shape, path)
    if kind == "list" and isinstance(request, list):
        found += [
            p
            for i, item in enumerate(request)
            for p in problems(item, shape.member, f"{path}[{i}]")
        ]
    elif kind == "map" and isinstance(request, dict):
        for key, value in request.items():
            found += problems(key, shape.key, f"{path} key {key!r}")
            found += problems(value, shape.value, f"{path}[{key!r}]")
    elif kind == "string" and isinstance(request, str):
        found += _string(request, shape, path)
    return found


def _bounds(value: Any, shape: Any, path: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if shape.type_name in _NUMBERS and isinstance(value, int | float):
        measure, unit = value, ""
    elif isinstance(value, str | list | dict):
        measure, unit = len(value), " long" if isinstance(value, str) else " items"
    else:
        return []
    if low is not None and measure < low:
        return [f"{path} must be at least {low}{unit}; got {measure}"]
    if high is not None and measure > high:
        return [f"{path} must be at most {high}{unit}; got {measure}"]
    return []


def _string(value: str, shape: Any, path: str) -> list[str]:
    if shape.enum and value not in shape.enum:
        return [f"{path} must be one of {sorted(shape.enum)}; got {value!r}"]
    pattern = _pattern(shape.metadata.get("pattern"))
    if pattern is not None and not pattern.fullmatch(value):
        return [f"{path} must match {shape.metadata['pattern']!r}; got {value!r}"]
    return []


@functools.lru_cache(maxsize=256)
def _pattern(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    for java, python in _JAVA_CLASSES.items():
        text = text.replace(java, python)
    try:
        return re.compile(text, re.DOTALL)
    except re.error:  # a construct Python lacks: the service alone will judge it
        return None


MAX_RUNTIME_S = 28 * 24 * 3600  # "The maximum time that a TrainingJob can run ... is 28 days"


def _spot(request: dict[str, Any]) -> list[str]:
    stop = request.get("StoppingCondition", {})
    if stop.get("MaxRuntimeInSeconds", 0) > MAX_RUNTIME_S:
        return [
            f"StoppingCondition.MaxRuntimeInSeconds must be at most {MAX_RUNTIME_S} (28 days); "
            f"got {stop['MaxRuntimeInSeconds']}"
        ]
    if not request.get("EnableManagedSpotTraining"):
        return (
            []
            if "MaxWaitTimeInSeconds" not in stop
            else [
                "StoppingCondition.MaxWaitTimeInSeconds is allowed only with "
                "EnableManagedSpotTraining (spot training); remove it or use spot"
            ]
        )
    wait, run = stop.get("MaxWaitTimeInSeconds"), stop.get("MaxRuntimeInSeconds", 86_400)
    if wait is None or wait < run:
        return [
            f"StoppingCondition.MaxWaitTimeInSeconds must be set and at least "
            f"MaxRuntimeInSeconds ({run}) for spot training; got {wait}"
        ]
    return []


def _tuning(request: dict[str, Any]) -> list[str]:
    config = request.get("HyperParameterTuningJobConfig", {})
    found = []
    if (
        config.get("Strategy") == "Hyperband"
        and config.get("TrainingJobEarlyStoppingType", "Off") != "Off"
    ):
        found.append(
            "HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType must be "
            "'Off' with the Hyperband strategy, which stops trials itself"
        )
    ranges = config.get("ParameterRanges", {})
    if config.get("Strategy") == "Grid" and any(
        ranges.get(kind) for kind in ("IntegerParameterRanges", "ContinuousParameterRanges")
    ):
        found.append(
            "HyperParameterTuningJobConfig.ParameterRanges must hold only "
            "CategoricalParameterRanges with the Grid strategy"
        )
    found += _grid_jobs(config)
    return found + [
        f"TrainingJobDefinition: {p}"
        for p in _spot({"StoppingCondition": {}, **request.get("TrainingJobDefinition", {})})
    ]


def _grid_jobs(config: dict[str, Any]) -> list[str]:
    # AWS: with Grid, MaxNumberOfTrainingJobs "should equal the total number of distinct
    # categorical combinations possible".
    jobs = config.get("ResourceLimits", {}).get("MaxNumberOfTrainingJobs")
    if config.get("Strategy") != "Grid" or jobs is None:
        return []
    combinations = 1
    for values in config.get("ParameterRanges", {}).get("CategoricalParameterRanges", []):
        combinations *= len(values.get("Values", []))
    if jobs == combinations:
        return []
    return [
        "HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs must equal "
        f"the grid's {combinations} combinations with the Grid strategy; got {jobs}"
    ]


def _serverless(request: dict[str, Any]) -> list[str]:
    found = []
    for i, variant in enumerate(request.get("ProductionVariants", [])):
        memory = variant.get("ServerlessConfig", {}).get("MemorySizeInMB")
        if memory is not None and memory % 1024:
            found.append(
                f"ProductionVariants[{i}].ServerlessConfig.MemorySizeInMB must be a "
                f"multiple of 1024; got {memory}"
            )
    return found


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "CreateTrainingJob": _spot,
    "CreateHyperParameterTuningJob": _tuning,
    "CreateEndpointConfig": _serverless,
}
"""The documented cross-field rules, by operation."""


def strict_problems(operation: str, request: dict[str, Any], input_shape: Any) -> list[str]:
    """The shape's problems with ``request`` and those of the operation's documented rules."""
    rule = RULES.get(operation)
    return problems(request, input_shape) + (rule(request) if rule is not None else [])
