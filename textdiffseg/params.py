"""Typed reading of the parameters a server receives: ``--conf`` strings and the JSON of infer/train requests.

One set of true/false words, one parser per type with its range, and one-line errors that name the key, for every
reader; each caller says what its errors become (``PromptError`` -> HTTP 400 for ``/infer``, ``ValueError`` for the
conf and training) and how its keys are called in messages (``conf 'ensemble': ...``).

Values may arrive as strings, numbers or booleans; ``None`` and ``""`` (a client sending an option back blank) mean
"use the default". With ``first_of_list`` a one-element list stands for its element (3D Slicer sends list options
that way).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", "none"})

T = TypeVar("T")


def parse_int(value: object) -> int:
    """An ``int``, an integral ``float`` or a string of an integer; raises ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def parse_float(value: object) -> float:
    """A number or a string of one; raises ``ValueError`` otherwise (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    return float(value)


def parse_bool(value: object) -> bool:
    """``True``/``False`` or one of :data:`TRUE_WORDS`/:data:`FALSE_WORDS` (any case); ``ValueError`` otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, int | str) else None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(value)


class ParamReader:
    """Reads typed values from ``values`` by key.

    Args:
        values: the parameters (``--conf`` dict, request dict).
        label: how messages call the parameters (``conf``, ``infer request``, ``train request``).
        error: the exception type errors are raised as.
        first_of_list: a one-element list (or tuple) stands for its element.
    """

    def __init__(
        self,
        values: Mapping[str, object] | None,
        label: str,
        error: type[Exception] = ValueError,
        first_of_list: bool = False,
    ) -> None:
        self.values = values or {}
        self.label = label
        self.error = error
        self.first_of_list = first_of_list

    def raw(self, key: str) -> object | None:
        """The value sent for ``key``; ``None`` when absent or blank (strings are stripped)."""
        value = self.values.get(key)
        if self.first_of_list and isinstance(value, list | tuple):
            value = value[0] if value else None
        if isinstance(value, str):
            value = value.strip()
        return None if value is None or value == "" else value

    def fail(self, key: str, expected: str, value: object) -> Exception:
        """The one-line error for a bad value of ``key`` (to be raised by the caller)."""
        return self.error(f"{self.label} '{key}': expected {expected}, got {value!r}")

    def get(self, key: str, default: T, parse: Callable[[object], T], expected: str) -> T:
        """``parse(value)``, or ``default`` when nothing was sent; a ``ValueError``/``TypeError`` names the key."""
        value = self.raw(key)
        if value is None:
            return default
        try:
            return parse(value)
        except (ValueError, TypeError):
            raise self.fail(key, expected, value) from None

    def integer(self, key: str, default: T, lo: int, hi: int | None = None) -> int | T:
        """An integer from ``lo`` to ``hi`` (inclusive; ``None``: no upper bound)."""
        expected = f"an integer from {lo} to {hi}" if hi is not None else f"an integer of at least {lo}"

        def parse(value: object) -> int:
            number = parse_int(value)
            if number < lo or (hi is not None and number > hi):
                raise ValueError(value)
            return number

        return self.get(key, default, parse, expected)

    def number(self, key: str, default: T, above: float, below: float) -> float | T:
        """A number strictly between ``above`` and ``below``."""

        def parse(value: object) -> float:
            number = parse_float(value)
            if not above < number < below:
                raise ValueError(value)
            return number

        return self.get(key, default, parse, f"a number between {above:g} and {below:g}")

    def flag(self, key: str, default: T) -> bool | T:
        """A boolean (``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``, ``none``)."""
        return self.get(key, default, parse_bool, "true or false")

    def choice(self, key: str, default: T, choices: Collection[str]) -> str | T:
        """One of ``choices`` (exact text)."""

        def parse(value: object) -> str:
            if not isinstance(value, str) or value not in choices:
                raise ValueError(value)
            return value

        return self.get(key, default, parse, f"one of {sorted(choices)}")

    def text(self, key: str, default: T) -> str | T:
        """The value as text (stripped)."""
        return self.get(key, default, str, "text")
