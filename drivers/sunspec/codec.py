"""SunSpec register codec: registers <-> values, scale factors and "not implemented" markers.

Pure functions, shared by the drivers (decode what a device says) and the simulated devices (encode
what the park says), so both sides agree on every bit. SunSpec marks an unimplemented point with a
reserved value (int16 -32768, uint16 0xFFFF, acc 0, sunssf -32768, int32 0x80000000, uint32
0xFFFFFFFF, float NaN, all-NUL string); those decode to ``None`` and ``None`` encodes to them, so an
absent value can never be mistaken for a real one. Multi-register values are big-endian, high word
first. Scaled values are ``raw * 10**sf``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

from drivers.sunspec.models import ModelDef, Point

Value = int | float | str | None

SF_MIN, SF_MAX = -10, 10

# type -> (registers, struct format, unimplemented raw value); strings/pad are handled apart.
_INT_TYPES: dict[str, tuple[int, str, int]] = {
    "int16": (1, ">h", -0x8000),
    "sunssf": (1, ">h", -0x8000),
    "uint16": (1, ">H", 0xFFFF),
    "enum16": (1, ">H", 0xFFFF),
    "bitfield16": (1, ">H", 0xFFFF),
    "count": (1, ">H", 0xFFFF),
    "acc16": (1, ">H", 0),
    "int32": (2, ">i", -0x8000_0000),
    "uint32": (2, ">I", 0xFFFF_FFFF),
    "enum32": (2, ">I", 0xFFFF_FFFF),
    "bitfield32": (2, ">I", 0xFFFF_FFFF),
    "acc32": (2, ">I", 0),
    "int64": (4, ">q", -0x8000_0000_0000_0000),
    "uint64": (4, ">Q", 0xFFFF_FFFF_FFFF_FFFF),
    "acc64": (4, ">Q", 0),
}
_FLOAT_TYPES: dict[str, tuple[int, str]] = {"float32": (2, ">f"), "float64": (4, ">d")}


def type_size(type_: str) -> int | None:
    """Registers a value of ``type_`` takes (``None`` for strings, whose size the point gives)."""
    if type_ in _INT_TYPES:
        return _INT_TYPES[type_][0]
    if type_ in _FLOAT_TYPES:
        return _FLOAT_TYPES[type_][0]
    if type_ == "pad":
        return 1
    if type_ == "string":
        return None
    raise ValueError(f"unsupported SunSpec type {type_!r}")


def _to_bytes(regs: Sequence[int]) -> bytes:
    return b"".join(int(r).to_bytes(2, "big") for r in regs)


def _to_regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def valid_range(type_: str) -> tuple[int, int]:
    """Smallest and largest *implemented* raw value of an integer type (accumulators wrap)."""
    n, fmt, _ = _INT_TYPES[type_]
    bits = 16 * n
    if type_ == "sunssf":
        return SF_MIN, SF_MAX
    if type_.startswith("acc"):
        return 1, 2**bits - 1
    if fmt[1].islower():
        return -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1
    return 0, 2**bits - 2


def decode(type_: str, regs: Sequence[int]) -> Value:
    """Raw value of one point from its registers; ``None`` when marked not implemented."""
    if type_ == "pad":
        return None
    if type_ == "string":
        text = _to_bytes(regs).split(b"\0", 1)[0].decode("utf-8", errors="replace")
        return text or None
    if type_ in _FLOAT_TYPES:
        n, fmt = _FLOAT_TYPES[type_]
        f = float(struct.unpack(fmt, _to_bytes(regs[:n]))[0])
        return None if math.isnan(f) else f
    n, fmt, unimpl = _INT_TYPES[type_]
    if len(regs) < n:
        raise ValueError(f"{type_} needs {n} registers, got {len(regs)}")
    raw = int(struct.unpack(fmt, _to_bytes(regs[:n]))[0])
    if raw == unimpl:
        return None
    if type_ == "sunssf" and not SF_MIN <= raw <= SF_MAX:
        raise ValueError(f"scale factor {raw} outside {SF_MIN}..{SF_MAX}")
    return raw


def encode(type_: str, value: Value, size: int | None = None) -> list[int]:
    """Registers for one raw value; ``None`` gives the type's "not implemented" pattern."""
    if type_ == "string":
        if size is None:
            raise ValueError("string needs a size in registers")
        data = b"" if value is None else str(value).encode("utf-8")
        if len(data) > 2 * size or b"\0" in data:
            raise ValueError(f"string {value!r} does not fit {size} registers")
        return _to_regs(data.ljust(2 * size, b"\0"))
    if type_ == "pad":
        return [0]
    if type_ in _FLOAT_TYPES:
        _, fmt = _FLOAT_TYPES[type_]
        return _to_regs(struct.pack(fmt, math.nan if value is None else float(value)))
    n, fmt, unimpl = _INT_TYPES[type_]
    if value is None:
        return _to_regs(struct.pack(fmt, unimpl))
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{type_} needs a number, got {value!r}")
    raw = round(value)
    if type_.startswith("acc"):
        # accumulators roll over; a counter at exactly 0 reads as "not implemented", as SunSpec defines
        return _to_regs(struct.pack(fmt, raw % 2 ** (16 * n)))
    lo, hi = valid_range(type_)
    if not lo <= raw <= hi:
        raise ValueError(f"{raw} outside the {type_} range {lo}..{hi}")
    return _to_regs(struct.pack(fmt, raw))


def scale(raw: int | float | None, sf: int | None) -> float | None:
    """Engineering value ``raw * 10**sf``; ``None`` when either part is not implemented."""
    if raw is None or sf is None:
        return None
    return raw / 10**-sf if sf < 0 else float(raw * 10**sf)


def unscale(value: float, sf: int) -> int:
    """Raw integer for an engineering ``value`` at scale factor ``sf`` (rounded to nearest)."""
    if not math.isfinite(value):
        raise ValueError(f"cannot encode {value!r}")
    return round(value * 10.0 ** (-sf)) if sf < 0 else round(value / 10.0**sf)


def _sf_of(point: Point, found: Mapping[str, Value]) -> int | None:
    if isinstance(point.sf, int):
        return point.sf
    sf = found.get(point.sf) if point.sf else None
    return sf if isinstance(sf, int) else None


def decode_block(mdef: ModelDef, regs: Sequence[int]) -> dict[str, Value]:
    """Decode a model block read from its ID register; scaled points come back as floats.

    Points beyond the registers given (a device with an older, shorter model) decode to ``None``;
    so does a scaled point whose scale factor is not implemented.
    """
    raw: dict[str, Value] = {}
    for p in mdef.points:
        end = p.offset + p.size
        raw[p.name] = decode(p.type, regs[p.offset : end]) if end <= len(regs) else None
    out: dict[str, Value] = {}
    for p in mdef.points:
        v = raw[p.name]
        if p.sf is not None and p.type != "sunssf":
            out[p.name] = scale(v if isinstance(v, int | float) else None, _sf_of(p, raw))
        else:
            out[p.name] = v
    return out


def encode_block(mdef: ModelDef, values: Mapping[str, Value]) -> list[int]:
    """Registers of a whole model block (header included) from engineering values.

    Scale-factor points are given as integer exponents in ``values``; points left out are encoded
    as not implemented. Raises ``ValueError`` naming the point when a value does not fit.
    """
    unknown = set(values) - {p.name for p in mdef.points}
    if unknown:
        raise ValueError(f"model {mdef.id} has no points {sorted(unknown)}")
    regs: list[int] = []
    for p in mdef.points:
        v: Value = {"ID": mdef.id, "L": mdef.length}.get(p.name, values.get(p.name))
        try:
            if p.sf is not None and p.type != "sunssf" and v is not None:
                sf = _sf_of(p, values)
                if sf is None:
                    raise ValueError(f"scale factor {p.sf!r} missing")
                v = unscale(float(v), sf)
            regs.extend(encode(p.type, v, p.size))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"model {mdef.id} point {p.name}: {exc}") from None
    return regs
