"""Checks for user-supplied parameters, with one message shape for all of them.

Every message reads ``"<name> must be <expected>; got <value>."`` followed by
an optional hint, so users learn one pattern.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Any, TypeVar, cast

from sm_imgclf.errors import ConfigurationError

T = TypeVar("T")


def bad_value(name: str, expected: str, got: Any, hint: str = "") -> ConfigurationError:
    """Build the error for a parameter whose value is unusable."""
    message = f"{name} must be {expected}; got {got!r}."
    if hint:
        message = f"{message} {hint}"
    return ConfigurationError(message)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    low_open: bool = False,
) -> Any:
    """Return ``value`` if it is a number within ``[low, high]``, else raise."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad_value(name, "an integer" if integer else "a number", value)
    number = float(cast(float, value))
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        raise bad_value(name, _describe_range(low, high, low_open), value)
    return value


def _describe_range(low: float | None, high: float | None, low_open: bool) -> str:
    left = "(" if low_open else "["
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"<= {high}"
    return f"in {left}{low}, {high}]"


def check_choice(name: str, value: Any, choices: Collection[T]) -> T:
    """Return ``value`` if it is one of ``choices``, else raise with close matches."""
    if value in choices:
        return value  # type: ignore[no-any-return]
    raise bad_value(name, f"one of {sorted(map(str, choices))}", value, suggest(value, choices))


def suggest(value: Any, choices: Iterable[Any]) -> str:
    """Return a "Did you mean ...?" hint for ``value``, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.6)
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_resource_name(name: str, value: Any, *, max_length: int = 63) -> str:
    """Return ``value`` if SageMaker accepts it as a job or endpoint name, else raise.

    SageMaker's pattern is ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,N}``: letters, digits
    and hyphens, starting and ending with a letter or digit. Local runs keep the
    same rule, so a name that works here works on SageMaker too.
    """
    import re

    if not isinstance(value, str) or not re.fullmatch(
        rf"[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,{max_length - 1}}}", value
    ):
        raise bad_value(
            name,
            f"1-{max_length} letters, digits and hyphens, starting and "
            "ending with a letter or digit",
            value,
        )
    return value


def check_identifier(name: str, value: Any, *, allowed: str = "-_.") -> str:
    """Return ``value`` if it is a non-empty string of letters, digits and ``allowed``."""
    if not isinstance(value, str) or not value:
        raise bad_value(name, "a non-empty string", value)
    if not all(ch.isalnum() or ch in allowed for ch in value):
        raise bad_value(name, f"made of letters, digits and {allowed!r}", value)
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, value: Any) -> float:
    """Seconds in a duration written ``"90s"``, ``"30m"``, ``"4h"``, ``"2d"`` or ``"1h30m"``."""
    import re

    text = value.strip().lower() if isinstance(value, str) else ""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd])", "", text).strip():
        raise bad_value(name, "a duration such as '90m', '4h', '2d' or '1h30m'", value)
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise bad_value(name, "a duration longer than zero", value)
    return seconds
