"""Command-line argument types: a number within bounds, with a message that says which and why."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded_float(what: str, low: float, high: float, unit: str = "", suffix: str = "") -> Callable[[str], float]:
    """A parser for ``low < value <= high``; ``suffix`` (such as ``h``) may follow the number."""
    shown = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        try:
            value = float(text.removesuffix(suffix) if suffix else text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number{shown}, not {text!r}") from None
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be between {low:g} and {high:g}{shown}")
        return value

    return parse
