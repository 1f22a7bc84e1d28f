"""Typed parameters that cross process boundaries as strings and come back typed.

A :class:`Param` declares one parameter's type, default and constraint; the
same declaration validates Python values, formats them as strings (argv,
SageMaker's string map) and parses the strings back. Formatting then parsing
returns the same value: floats are written with ``repr``, which round-trips.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sm_imgclf._params import bad_value, suggest


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default, and allowed values.

    Attributes:
        name: The parameter name, as users write it.
        kind: ``int``, ``float``, ``str``, ``bool`` or ``list`` (a list of strings).
        default: The default value.
        low: Smallest allowed number (``int``/``float``).
        high: Largest allowed number.
        low_open: Whether ``low`` itself is excluded.
        high_open: Whether ``high`` itself is excluded.
        choices: Allowed strings (``str``).
        help: One line for docs and ``--help``.
    """

    name: str
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def expected(self) -> str:
        """Describe the allowed values, for error messages and docs."""
        if self.choices:
            return f"one of {list(self.choices)}"
        if self.kind in (int, float):
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            noun = "an integer" if self.kind is int else "a number"
            return f"{noun} in {left}{low}, {high}{right}"
        return {bool: "true or false", list: "a list of names", str: "a string"}[self.kind]

    def check(self, value: Any) -> Any:
        """Return ``value`` if allowed (ints are accepted for floats), else raise."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is list and isinstance(value, str):
            value = [part for part in value.split(",") if part]
        if self.kind is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise bad_value(self.name, self.expected(), value)
        if self.kind in (int, float) and not self._in_range(cast(float, value)):
            raise bad_value(self.name, self.expected(), value)
        if self.choices and value not in self.choices:
            raise bad_value(self.name, self.expected(), value, suggest(value, self.choices))
        return tuple(cast(list[str], value)) if self.kind is list else value

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low, high = self.low, self.high
        if low is not None and (value <= low if self.low_open else value < low):
            return False
        return not (high is not None and (value >= high if self.high_open else value > high))

    def format(self, value: Any) -> str:
        """Return ``value`` as the string that :meth:`parse` reads back."""
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float:
            return repr(float(value))
        if self.kind is list:
            return ",".join(value)
        return str(value)

    def parse(self, text: str) -> Any:
        """Read a string written by :meth:`format` (JSON-quoted strings are accepted too)."""
        text = _unquote(text.strip())
        try:
            if self.kind is bool:
                value: Any = {"true": True, "false": False, "1": True, "0": False}[text.lower()]
            elif self.kind is int:
                number = float(text)
                value = int(number) if number.is_integer() else number
            elif self.kind is float:
                value = float(text)
            else:
                value = text
        except (ValueError, KeyError):
            raise bad_value(self.name, self.expected(), text) from None
        return self.check(value)


def _unquote(text: str) -> str:
    # SageMaker's SDK JSON-encodes framework hyperparameters: 64 arrives as '"64"'.
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def check_names(params: Sequence[Param], names: Iterable[str]) -> None:
    """Raise for the first name not in ``params``, suggesting close matches."""
    known = [p.name for p in params]
    for name in names:
        if name not in known:
            raise bad_value(
                "hyperparameter name", f"one of {sorted(known)}", name, suggest(name, known)
            )


def check_all(params: Sequence[Param], values: dict[str, Any]) -> dict[str, Any]:
    """Check a mapping of values against ``params``; unknown names suggest close matches."""
    check_names(params, values)
    known = {p.name: p for p in params}
    return {name: known[name].check(value) for name, value in values.items()}
