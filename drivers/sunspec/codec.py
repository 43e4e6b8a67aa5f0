"""SunSpec register codec: registers <-> values, scale factors and "not implemented" markers.

Pure functions, shared by the drivers (decode what a device says) and the simulated devices (encode
what the park says), so both sides agree on every bit. SunSpec marks an unimplemented point with a
reserved value (int16 -32768, uint16 0xFFFF, acc 0, sunssf -32768, int32 0x80000000, uint32
0xFFFFFFFF, float NaN, all-NUL string); those decode to ``None`` and ``None`` encodes to them, so an
absent value can never be mistaken for a real one. Multi-register values are big-endian, high word
first. Scaled values are ``raw * 10**sf``.

Hot paths: types and models are compiled once into tables (struct formats, byte offsets, ranges,
scale-factor links) and a block is converted with one ``struct`` call; :func:`decode_points`
decodes only the points a reading needs, and :class:`BlockImage` lets a server re-encode only the
values that changed. All of it goes through the same per-type code as :func:`encode`/:func:`decode`,
so every value is checked the same way on every path.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from drivers.sunspec.models import ModelDef

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
_INT, _FLOAT, _STRING, _PAD = range(4)


def _to_bytes(regs: Sequence[int]) -> bytes:
    try:
        return struct.pack(f">{len(regs)}H", *regs)
    except struct.error:  # not plain 16-bit ints: the slow path converts what it can, or says why not
        return b"".join(int(r).to_bytes(2, "big") for r in regs)


def _to_regs(data: bytes | bytearray) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


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


@dataclass(frozen=True, slots=True)
class _Type:
    """What encoding and decoding one type takes, worked out once."""

    name: str
    kind: int  # _INT, _FLOAT, _STRING or _PAD
    size: int  # registers (0 for strings: the point gives it)
    st: struct.Struct
    unimpl: int  # raw "not implemented" value (integers)
    none: bytes  # the packed "not implemented" pattern
    lo: int
    hi: int
    wrap: int  # modulus of an accumulator; 0 for every other type
    is_sf: bool


def _compile_type(name: str) -> _Type:
    if name in _INT_TYPES:
        n, fmt, unimpl = _INT_TYPES[name]
        lo, hi = valid_range(name)
        st = struct.Struct(fmt)
        return _Type(name, _INT, n, st, unimpl, st.pack(unimpl), lo, hi,
                     2 ** (16 * n) if name.startswith("acc") else 0, name == "sunssf")
    if name in _FLOAT_TYPES:
        n, fmt = _FLOAT_TYPES[name]
        st = struct.Struct(fmt)
        return _Type(name, _FLOAT, n, st, 0, st.pack(math.nan), 0, 0, 0, False)
    kind, size = (_STRING, 0) if name == "string" else (_PAD, 1)
    return _Type(name, kind, size, struct.Struct(">H"), 0, b"", 0, 0, 0, False)


_TYPES: dict[str, _Type] = {t: _compile_type(t) for t in (*_INT_TYPES, *_FLOAT_TYPES, "string", "pad")}


def type_size(type_: str) -> int | None:
    """Registers a value of ``type_`` takes (``None`` for strings, whose size the point gives)."""
    if type_ not in _TYPES:
        raise ValueError(f"unsupported SunSpec type {type_!r}")
    return _TYPES[type_].size or None


def _decode_at(t: _Type, buf: bytes, pos: int, size: int) -> Value:
    """Raw value of a point of ``size`` registers at byte ``pos`` of ``buf``."""
    kind = t.kind
    if kind == _INT:
        raw: int = t.st.unpack_from(buf, pos)[0]
        if raw == t.unimpl:
            return None
        if t.is_sf and not SF_MIN <= raw <= SF_MAX:
            raise ValueError(f"scale factor {raw} outside {SF_MIN}..{SF_MAX}")
        return raw
    if kind == _FLOAT:
        f: float = t.st.unpack_from(buf, pos)[0]
        return None if math.isnan(f) else f
    if kind == _STRING:
        text = buf[pos : pos + 2 * size].split(b"\0", 1)[0].decode("utf-8", errors="replace")
        return text or None
    return None


def _encode_raw(t: _Type, value: Value, size: int | None) -> bytes:
    """The bytes of one raw value; ``None`` gives the type's "not implemented" pattern."""
    kind = t.kind
    if kind == _INT:
        if value is None:
            return t.none
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{t.name} needs a number, got {value!r}")
        raw = round(value)
        if t.wrap:
            # accumulators roll over; a counter at exactly 0 reads as "not implemented", as SunSpec defines
            return t.st.pack(raw % t.wrap)
        if not t.lo <= raw <= t.hi:
            raise ValueError(f"{raw} outside the {t.name} range {t.lo}..{t.hi}")
        return t.st.pack(raw)
    if kind == _FLOAT:
        return t.st.pack(math.nan if value is None else float(value))
    if kind == _PAD:
        return b"\0\0"
    if size is None:
        raise ValueError("string needs a size in registers")
    data = b"" if value is None else str(value).encode("utf-8")
    if len(data) > 2 * size or b"\0" in data:
        raise ValueError(f"string {value!r} does not fit {size} registers")
    return data.ljust(2 * size, b"\0")


def decode(type_: str, regs: Sequence[int]) -> Value:
    """Raw value of one point from its registers; ``None`` when marked not implemented."""
    t = _TYPES[type_]
    if t.kind == _PAD:
        return None
    if t.kind == _STRING:
        return _decode_at(t, _to_bytes(regs), 0, len(regs))
    if t.kind == _FLOAT:
        f: float = t.st.unpack(_to_bytes(regs[: t.size]))[0]
        return None if math.isnan(f) else f
    if len(regs) < t.size:
        raise ValueError(f"{type_} needs {t.size} registers, got {len(regs)}")
    return _decode_at(t, _to_bytes(regs[: t.size]), 0, t.size)


def encode(type_: str, value: Value, size: int | None = None) -> list[int]:
    """Registers for one raw value; ``None`` gives the type's "not implemented" pattern."""
    return _to_regs(_encode_raw(_TYPES[type_], value, size))


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


@dataclass(frozen=True, slots=True)
class _Pt:
    """One point of a compiled model."""

    name: str
    type: _Type
    pos: int  # byte offset from the ID register
    size: int  # registers
    end: int  # register offset just past the point
    scaled: bool  # has a scale factor and is not one
    sf: str | int | None  # as in the definition: a point name or a fixed exponent
    header: bool  # named ID or L: encode_block fills them in


def _sf_of(p: _Pt, found: Mapping[str, Value]) -> int | None:
    if isinstance(p.sf, int):
        return p.sf
    sf = found.get(p.sf) if p.sf else None
    return sf if isinstance(sf, int) else None


class _Model:
    """A model definition compiled for the codec: points with types, byte offsets and SF links."""

    def __init__(self, mdef: ModelDef) -> None:
        self.mdef = mdef
        self.points = tuple(
            _Pt(p.name, _TYPES[p.type], 2 * p.offset, p.size, p.offset + p.size,
                p.sf is not None and p.type != "sunssf", p.sf, p.name in ("ID", "L"))
            for p in mdef.points
        )  # fmt: skip
        self.by_name = {p.name: p for p in reversed(self.points)}  # first wins, as ModelDef.point
        self.names = frozenset(self.by_name)
        self.header = {"ID": mdef.id, "L": mdef.length}
        self.nregs = sum(p.size for p in mdef.points)
        self.regs = struct.Struct(f">{self.nregs}H")
        # a point's registers are where its offset says (what BlockImage relies on)
        self.aligned = all(p.type.size in (0, p.size) for p in self.points)
        sf_names = {p.sf for p in self.points if p.scaled and isinstance(p.sf, str)}
        # what decode_points decodes besides the names asked for: the points used as scale factors
        # (needed to scale) and every sunssf (checked, so the same blocks are refused as decode_block)
        self.sf_points = tuple(p for p in self.points if p.type.is_sf or p.name in sf_names)
        self.users: dict[str, tuple[_Pt, ...]] = {
            n: tuple(p for p in self.points if p.scaled and p.sf == n) for n in sf_names
        }


_MODELS: dict[int, _Model] = {}


def _model(mdef: ModelDef) -> _Model:
    """``mdef`` compiled, cached by model id (a different definition of the same id replaces it)."""
    compiled = _MODELS.get(mdef.id)
    if compiled is None or compiled.mdef is not mdef:
        compiled = _MODELS[mdef.id] = _Model(mdef)
    return compiled


def decode_block(mdef: ModelDef, regs: Sequence[int]) -> dict[str, Value]:
    """Decode a model block read from its ID register; scaled points come back as floats.

    Points beyond the registers given (a device with an older, shorter model) decode to ``None``;
    so does a scaled point whose scale factor is not implemented.
    """
    m = _model(mdef)
    n = len(regs)
    buf = _to_bytes(regs[: m.nregs])
    raw: dict[str, Value] = {}
    for p in m.points:
        raw[p.name] = _decode_at(p.type, buf, p.pos, p.size) if p.end <= n else None
    out: dict[str, Value] = {}
    for p in m.points:
        v = raw[p.name]
        out[p.name] = scale(v if isinstance(v, int | float) else None, _sf_of(p, raw)) if p.scaled else v
    return out


def decode_points(mdef: ModelDef, regs: Sequence[int], names: Iterable[str]) -> dict[str, Value]:
    """``{name: decode_block(mdef, regs)[name] for name in names}``, decoding only what that needs.

    Every scale factor of the block is still checked, so a block :func:`decode_block` refuses
    (``ValueError``) is refused here too; a name the model does not have gives ``None``, as
    ``block.get(name)`` would.
    """
    m = _model(mdef)
    n = len(regs)
    buf = _to_bytes(regs[: m.nregs])
    sfs: dict[str, Value] = {}
    for p in m.sf_points:
        sfs[p.name] = _decode_at(p.type, buf, p.pos, p.size) if p.end <= n else None
    out: dict[str, Value] = {}
    for name in names:
        pt = m.by_name.get(name)
        if pt is None:
            out[name] = None
            continue
        v = sfs[name] if name in sfs else _decode_at(pt.type, buf, pt.pos, pt.size) if pt.end <= n else None
        out[name] = scale(v if isinstance(v, int | float) else None, _sf_of(pt, sfs)) if pt.scaled else v
    return out


def _encode_point(m: _Model, p: _Pt, v: Value, values: Mapping[str, Value]) -> bytes:
    try:
        if p.scaled and v is not None:
            sf = p.sf if isinstance(p.sf, int) else values.get(p.sf) if p.sf else None  # _sf_of, inlined
            if not isinstance(sf, int):
                raise ValueError(f"scale factor {p.sf!r} missing")
            v = unscale(float(v), sf)
        return _encode_raw(p.type, v, p.size)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"model {m.mdef.id} point {p.name}: {exc}") from None


def _unknown(m: _Model, values: Mapping[str, Value]) -> None:
    unknown = set(values) - m.names
    if unknown:
        raise ValueError(f"model {m.mdef.id} has no points {sorted(unknown)}")


def encode_block(mdef: ModelDef, values: Mapping[str, Value]) -> list[int]:
    """Registers of a whole model block (header included) from engineering values.

    Scale-factor points are given as integer exponents in ``values``; points left out are encoded
    as not implemented. Raises ``ValueError`` naming the point when a value does not fit.
    """
    m = _model(mdef)
    _unknown(m, values)
    header = m.header
    return _to_regs(b"".join(
        _encode_point(m, p, header[p.name] if p.header else values.get(p.name), values)
        for p in m.points
    ))  # fmt: skip


class BlockImage:
    """The registers of one model block, kept so that a server re-encodes only what changes.

    It starts as ``encode_block(mdef, values)``; :meth:`update` re-encodes just the points it is
    given (and, when a scale factor is among them, the points it scales). So the registers always
    equal ``encode_block(mdef, merged)``, ``merged`` being every value given so far, the latest
    winning; every value is checked exactly as there. A value that does not fit raises
    ``ValueError`` and leaves the image as it was.
    """

    __slots__ = ("_buf", "_m", "_values", "mdef")

    def __init__(self, mdef: ModelDef, values: Mapping[str, Value] | None = None) -> None:
        m = _model(mdef)
        if not m.aligned:
            raise ValueError(f"model {mdef.id}: point sizes differ from their types")
        self.mdef, self._m = mdef, m
        self._values: dict[str, Value] = dict(values or {})
        self._buf = bytearray(_to_bytes(encode_block(mdef, self._values)))

    @property
    def registers(self) -> list[int]:
        return list(self._m.regs.unpack_from(self._buf))

    def update(self, values: Mapping[str, Value]) -> list[int]:
        """Re-encode the points in ``values`` (header points are ignored); the new registers."""
        m, merged = self._m, self._values
        by_name, users = m.by_name, m.users
        sf_changed = not users.keys().isdisjoint(values)
        todo: list[_Pt] = []
        for name, v in values.items():
            p = by_name.get(name)
            if p is None:
                _unknown(m, values)
            elif p.header:
                continue
            elif sf_changed:
                todo.append(p)
            else:  # a value equal to the last, of the same type, keeps its registers; zeros are always
                # re-encoded (0.0 and -0.0 are equal but differ as floats)
                old = merged.get(name, _UNSET)
                if not (old is v or (type(old) is type(v) and old == v and v != 0)):
                    todo.append(p)
            if sf_changed and name in users:
                todo.extend(u for u in users[name] if u.name not in values)
        # where values and scale factors come from: only the points given are re-encoded, unless a
        # scale factor changes, and then its users too
        src, sfs = (values, merged) if not sf_changed else ({**merged, **values},) * 2
        try:
            new = [_encode_point(m, p, src.get(p.name), sfs) for p in todo]
        except ValueError:
            if len(todo) > 1:  # name the first bad point in register order, as encode_block does
                for p in sorted(todo, key=lambda p: p.pos):
                    _encode_point(m, p, src.get(p.name), sfs)
            raise
        buf = self._buf
        for p, data in zip(todo, new, strict=True):
            buf[p.pos : p.pos + len(data)] = data
        merged.update(values)
        return list(m.regs.unpack_from(buf))


_UNSET = object()
