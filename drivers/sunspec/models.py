"""SunSpec register maps as data, read from the official model definitions shipped in pysunspec2.

Hand-typed offsets drift from the standard; the JSON files in ``sunspec2/models/json`` *are* the
standard, so every point's offset, type, size, scale-factor reference and access comes from there.
Only a model's fixed block is mapped (the models this project needs keep what it reads there);
repeating groups are left out and :attr:`ModelDef.length` is the fixed-block length.

Offsets count from the model's first register (the ``ID`` register is offset 0, ``L`` offset 1), so a
point's absolute address is ``model address + offset``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

HEADER_LEN = 2  # ID and L registers in front of every model

# Models the drivers and the simulated devices use (all fixed-block only).
SUPPORTED_MODELS: tuple[int, ...] = (1, 101, 102, 103, 120, 121, 122, 123, 124, 201, 202, 203, 204, 713, 802)


@dataclass(frozen=True, slots=True)
class Point:
    name: str
    offset: int  # from the model's ID register
    type: str  # SunSpec type name: int16, uint16, acc32, sunssf, string, ...
    size: int  # registers
    sf: str | int | None  # name of the scale-factor point in the same model, a fixed exponent, or None
    units: str | None
    access: Literal["R", "RW"]
    mandatory: bool
    static: bool
    symbols: MappingProxyType[str, int]  # enum/bitfield symbol name -> value (bit index for bitfields)

    @property
    def writable(self) -> bool:
        return self.access == "RW"


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    length: int  # fixed-block length in registers, without the two header registers (the "L" value)
    points: tuple[Point, ...]  # ID and L included, in register order

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"SunSpec model {self.id} has no point {name!r}")

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.points)

    def at(self, offset: int) -> Point | None:
        """The point covering register ``offset`` (from the ID register), if any."""
        for p in self.points:
            if p.offset <= offset < p.offset + p.size:
                return p
        return None


def _point(raw: dict[str, Any], offset: int) -> Point:
    sf = raw.get("sf")
    if isinstance(sf, str) and sf.lstrip("-").isdigit():  # some definitions give a fixed exponent
        sf = int(sf)
    return Point(
        name=raw["name"],
        offset=offset,
        type=raw["type"],
        size=int(raw["size"]),
        sf=sf,
        units=raw.get("units"),
        access="RW" if raw.get("access") == "RW" else "R",
        mandatory=raw.get("mandatory") == "M",
        static=raw.get("static") == "S",
        symbols=MappingProxyType({s["name"]: int(s["value"]) for s in raw.get("symbols", [])}),
    )


def parse_model(definition: dict[str, Any]) -> ModelDef:
    """Build a :class:`ModelDef` from one ``model_N.json`` document (fixed block only)."""
    group = definition["group"]
    points: list[Point] = []
    offset = 0
    for raw in group["points"]:
        p = _point(raw, offset)
        points.append(p)
        offset += p.size
    if [p.name for p in points[:HEADER_LEN]] != ["ID", "L"]:
        raise ValueError(f"SunSpec model {definition.get('id')}: first points must be ID and L")
    return ModelDef(id=int(definition["id"]), name=group["name"], length=offset - HEADER_LEN,
                    points=tuple(points))


@cache
def model_def(model_id: int) -> ModelDef:
    """The official definition of SunSpec model ``model_id`` (cached)."""
    path = resources.files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    if not path.is_file():
        raise KeyError(f"no SunSpec definition for model {model_id}")
    return parse_model(json.loads(path.read_text(encoding="utf-8")))
