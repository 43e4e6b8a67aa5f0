"""The grid of a parameter sweep: ``--param PATH=V1,V2`` parsed, applied to a scenario, validated.

A path is dotted field names into :class:`~sim.scenario.Scenario`. A path through a list applies to
every element (``batteries.capacity_kwh`` sets each battery's capacity) unless the next segment is an
index (``batteries.0.capacity_kwh``). ``battery`` is accepted for ``batteries`` (the issue's spelling),
``interruptible_load`` for ``interruptible_loads``. Values are YAML scalars (``2000``, ``0.5``, ``true``).

Every point of the grid is re-validated as a whole scenario before anything runs, so a wrong path or
value fails at once with a :class:`ConfigError` naming the parameter and the reason, instead of
after an hour of sweeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from parkctl.errors import ConfigError
from parkctl.yamlfile import format_validation_error
from sim.scenario import Scenario

ALIASES = {"battery": "batteries", "interruptible_load": "interruptible_loads"}


@dataclass(frozen=True)
class Param:
    """One swept parameter: the path as the user wrote it and its values, in order."""

    path: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Point:
    """One point of the grid: its position, the parameter values and the scenario they make."""

    index: int
    params: dict[str, Any]
    seed: int
    scenario: Scenario


def parse_value(text: str) -> Any:
    """A YAML scalar: ``2000`` -> int, ``0.5`` -> float, ``true`` -> bool, anything else stays text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_param(text: str) -> Param:
    """``PATH=V1,V2,...`` -> :class:`Param`; the path is checked later against a scenario."""
    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"--param {text!r}: expected PATH=V1,V2,... such as battery.capacity_kwh=2000,4000")
    raw = [v.strip() for v in values.split(",")]
    if not values.strip() or any(not v for v in raw):
        raise ConfigError(f"--param {text!r}: empty value; give a comma list of values")
    return Param(path, tuple(parse_value(v) for v in raw))


def _set(node: Any, segments: Sequence[str], value: Any, where: str) -> None:
    """Set ``value`` at ``segments`` inside plain dict/list data; ``where`` is the path walked so far."""
    head, rest = segments[0], list(segments[1:])
    targets: list[int] | list[str]
    if isinstance(node, list):
        if head.isdigit():
            if int(head) >= len(node):
                raise ValueError(f"'{where}' has {len(node)} element(s), no index {head}")
            targets, where = [int(head)], f"{where}.{head}"
        else:
            if not node:
                raise ValueError(f"'{where}' is empty in this scenario")
            targets, rest = list(range(len(node))), list(segments)
    elif isinstance(node, dict):
        key = ALIASES.get(head, head) if head not in node else head
        if key not in node:
            raise ValueError(f"'{where or 'scenario'}' has no field {head!r}; fields: {', '.join(map(str, node))}")
        targets, where = [key], f"{where}.{key}" if where else key
    else:
        raise ValueError(f"'{where}' is a value ({node!r}), it has no field {head!r}")
    for t in targets:
        if rest:
            _set(node[t], rest, value, where)
        elif isinstance(node[t], dict | list):
            raise ValueError(f"'{where}' is a group of fields, not a value; name one of its fields")
        else:
            node[t] = value


def apply_params(scenario: Scenario, params: dict[str, Any]) -> Scenario:
    """The scenario with each ``path: value`` set, validated as a whole (ValueError/ValidationError)."""
    data = scenario.model_dump()
    for path, value in params.items():
        segments = path.split(".")
        if any(not s for s in segments):
            raise ValueError(f"{path!r} is not a dotted path of field names")
        _set(data, segments, value, "")
    return Scenario.model_validate(data)


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _validated(scenario: Scenario, params: dict[str, Any], what: str) -> Scenario:
    try:
        return apply_params(scenario, params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what)) from None
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def expand_grid(scenario: Scenario, params: Sequence[Param], seeds: Sequence[int] | None = None) -> list[Point]:
    """Cartesian product of every parameter's values × seeds (innermost), each point validated.

    Each value is first checked alone against the base scenario (the error names that parameter),
    then every combination (values may be valid alone and clash together, e.g. two SoC bounds).
    """
    paths = [p.path for p in params]
    doubled = sorted({p for p in paths if paths.count(p) > 1})
    if doubled:
        raise ConfigError(f"--param {doubled[0]!r} given twice; put all its values in one comma list")
    if seeds is not None and "seed" in paths:
        raise ConfigError("--param seed and --seeds both set the seed; use one of them")
    if seeds is not None and not seeds:
        raise ConfigError("--seeds is empty")
    for p in params:
        for v in p.values:
            _validated(scenario, {p.path: v}, f"--param {p.path}={v!r}")
    points: list[Point] = []
    for combo in itertools.product(*(p.values for p in params), *([seeds] if seeds is not None else [])):
        values = dict(zip(paths, combo[: len(paths)], strict=True))
        point = _validated(scenario, values, f"grid point {_describe(values)}")
        if seeds is not None:
            point = point.model_copy(update={"seed": combo[-1]})
        points.append(Point(len(points), values, point.seed, point))
    return points
