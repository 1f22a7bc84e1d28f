"""Search spaces: typed ranges of hyperparameters, checked against their schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sm_imgclf._params import bad_value, check_choice
from sm_imgclf.contracts.hyperparameters import BY_NAME
from sm_imgclf.contracts.schema import Param, check_names

Scale = Literal["linear", "log", "reverse_log"]
SCALES = ("linear", "log", "reverse_log")


@dataclass(frozen=True)
class Continuous:
    """A real-valued range, ``min`` to ``max`` inclusive.

    Args:
        min: Smallest value.
        max: Largest value.
        scale: ``"linear"``; ``"log"`` (for learning rates: every decade equally
            likely; needs ``min > 0``); or ``"reverse_log"`` (values close to 1,
            such as momentum, searched finely; needs ``0 <= min < max < 1``).
    """

    min: float
    max: float
    scale: Scale = "linear"


@dataclass(frozen=True)
class Integer:
    """An integer range, ``min`` to ``max`` inclusive.

    Args:
        min: Smallest value.
        max: Largest value.
        scale: ``"linear"`` or ``"log"`` (needs ``min > 0``).
    """

    min: int
    max: int
    scale: Scale = "linear"


@dataclass(frozen=True)
class Categorical:
    """A list of values to choose from, all of one type.

    Args:
        values: The candidates, such as ``[32, 64]`` or ``["sgd", "adamw"]``.
    """

    values: tuple[Any, ...]

    def __init__(self, values: Sequence[Any]) -> None:
        object.__setattr__(
            self,
            "values",
            tuple(values)
            if isinstance(values, Sequence) and not isinstance(values, str)
            else values,
        )


Range = Continuous | Integer | Categorical


def check_space(space: Mapping[str, Range]) -> dict[str, Range]:
    """Return ``space`` if every range fits its hyperparameter's schema, else raise.

    Raises:
        ConfigurationError: An unknown name, a range the schema does not accept,
            an empty or mixed-type categorical, or a scale the range can't use.
    """
    if not isinstance(space, Mapping) or not space:
        raise bad_value(
            "space",
            "a non-empty mapping of hyperparameter name to a range",
            space,
            "For example {'lr': Continuous(1e-4, 1e-1, scale='log')}.",
        )
    check_names(tuple(BY_NAME.values()), space)
    return {name: _check_range(BY_NAME[name], value) for name, value in space.items()}


def _check_range(param: Param, value: object) -> Range:
    where = f"space[{param.name!r}]"
    if isinstance(value, Categorical):
        return _check_categorical(param, value, where)
    if isinstance(value, Continuous | Integer):
        return _check_interval(param, value, where)
    hint = (
        f"Wrap lists in Categorical({list(value)!r})."
        if isinstance(value, list | tuple)
        else "Fixed values belong in the estimator's hyperparameters."
    )
    raise bad_value(where, "a Continuous, Integer or Categorical range", value, hint)


def _check_categorical(param: Param, value: Categorical, where: str) -> Categorical:
    values = value.values
    if not isinstance(values, tuple) or not values:
        raise bad_value(f"{where}.values", "a non-empty list", values)
    kinds = {type(v) for v in values}
    if len(kinds) > 1:
        raise bad_value(
            f"{where}.values",
            "values of one type",
            list(values),
            f"Found {sorted(k.__name__ for k in kinds)}; {param.name} takes {param.expected()}.",
        )
    if len(set(values)) != len(values):
        raise bad_value(f"{where}.values", "distinct values", list(values))
    for item in values:
        _check_value(param, item, where)
    return value


def _check_interval(param: Param, value: Continuous | Integer, where: str) -> Range:
    kind = "Integer" if isinstance(value, Integer) else "Continuous"
    wanted = int if isinstance(value, Integer) else float
    if param.kind not in (int, float):
        raise bad_value(
            where, f"a Categorical range ({param.name} takes {param.expected()})", value
        )
    if param.kind is int and wanted is float:
        raise bad_value(
            where, f"an Integer or Categorical range ({param.name} is an integer)", value
        )
    if param.kind is float and wanted is int:
        raise bad_value(
            where, f"a Continuous or Categorical range ({param.name} is a number)", value
        )
    scale = check_choice(f"{where}.scale", value.scale, SCALES)
    for end in ("min", "max"):
        number = getattr(value, end)
        if isinstance(number, bool) or not isinstance(
            number, (int, float) if wanted is float else int
        ):
            raise bad_value(
                f"{where}.{end}", f"{'an integer' if wanted is int else 'a number'}", number
            )
        _check_value(param, number, where)
    if not value.min < value.max:
        raise bad_value(
            where,
            f"a {kind} range with min < max",
            value,
            "For a single value, set it on the estimator instead.",
        )
    if scale == "log" and value.min <= 0:
        raise bad_value(f"{where}.min", "> 0 on a log scale", value.min)
    if scale == "reverse_log" and (kind == "Integer" or not 0 <= value.min < value.max < 1):
        raise bad_value(where, "a Continuous range within [0, 1) for scale='reverse_log'", value)
    return value


def _check_value(param: Param, item: Any, where: str) -> None:
    try:
        param.check(item)
    except ValueError as error:
        raise bad_value(
            where, f"values {param.name} accepts ({param.expected()})", item, str(error)
        ) from None


def grid_values(space: Mapping[str, Range]) -> dict[str, list[Any]]:
    """The candidate values of a grid search; every range must be :class:`Categorical`."""
    for name, value in space.items():
        if not isinstance(value, Categorical):
            raise bad_value(
                f"space[{name!r}]",
                "a Categorical range for strategy='grid'",
                value,
                "Grid search tries every combination, so it needs explicit lists "
                "(as SageMaker's grid search does).",
            )
    return {
        name: list(value.values) for name, value in space.items() if isinstance(value, Categorical)
    }


def grid_size(space: Mapping[str, Range]) -> int:
    """The number of combinations of a grid search over ``space``."""
    size = 1
    for values in grid_values(space).values():
        size *= len(values)
    return size


def describe(value: Range) -> dict[str, Any]:
    """A JSON-friendly description of a range (and :func:`from_description` reads it)."""
    if isinstance(value, Categorical):
        return {"type": "categorical", "values": list(value.values)}
    return {
        "type": "integer" if isinstance(value, Integer) else "continuous",
        "min": value.min,
        "max": value.max,
        "scale": value.scale,
    }


def from_description(data: Mapping[str, Any]) -> Range:
    """Rebuild a range from :func:`describe`'s output."""
    if data["type"] == "categorical":
        return Categorical(data["values"])
    kind = Integer if data["type"] == "integer" else Continuous
    return kind(data["min"], data["max"], data["scale"])
