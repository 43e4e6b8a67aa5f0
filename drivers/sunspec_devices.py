"""PV inverter, storage and meter capabilities over SunSpec Modbus.

Each device discovers its model map on first use and reads what it needs, coalescing neighbouring
model blocks into single requests of at most 125 registers; of each block it decodes only the points
the reading uses (and checks every scale factor in it). A point the reading needs that is "not
implemented", or a value outside its physical range, is counted on the client
(``stats.out_of_range``), logged and raised as :class:`DeviceError`: a controller acting on a
nonsense reading is worse than one that knows it has none.

Storage setpoints (model 124; the simulated devices implement the same mapping)::

    p_kw > 0 (discharge): StorCtl_Mod = 0b10 (DISCHARGE), OutWRte = p / WChaMax * 100 %, InWRte = 0
    p_kw < 0 (charge):    StorCtl_Mod = 0b01 (CHARGE),    InWRte = |p| / WChaMax * 100 %, OutWRte = 0
    p_kw = 0 (hold):      StorCtl_Mod = 0b11,             InWRte = OutWRte = 0
    InOutWRte_RvrtTms = revert_s (device watchdog: it idles when no fresh setpoint comes in time)

Both rates are percent of WChaMax, scaled by InOutWRte_SF. The rates are written first (one request,
the unused one zeroed), then StorCtl_Mod, so the intermediate state is either the new setpoint or zero.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import ClassVar

from drivers.capabilities import BatteryReading, MeterReading, PvReading
from drivers.modbus_client import MAX_READ_COUNT, ModbusDeviceClient, ModbusExceptionResponse
from drivers.sunspec.codec import Value, decode_points, encode, unscale
from drivers.sunspec.discovery import ModelInstance, discover
from drivers.sunspec.models import HEADER_LEN, model_def
from parkctl.clock import Clock, WallClock
from parkctl.errors import DeviceError

log = logging.getLogger(__name__)

INVERTER_MODELS = (103, 102, 101, 113, 112, 111)
METER_MODELS = (203, 204, 201, 202, 213, 214, 211, 212)
MAX_RATING_FACTOR = 10.0  # |W| beyond this many times the rating is a broken reading

Block = dict[str, Value]  # the points a reading asked for, by name

# What each reading decodes, by model (a name a model lacks reads as not implemented).
_INV_POINTS = ("W", "WH")
_LIMIT_POINTS = ("WMaxLim_Ena", "WMaxLimPct")
_CTL_POINTS = ("WChaMax", "InOutWRte_SF", "ChaState")  # model 124
_BATTERY_POINTS: Mapping[int, tuple[str, ...]] = {
    713: ("SoC", "WHRtg", "SoH"),
    802: ("W", "SoC", "WHRtg", "WChaRteMax", "WDisChaRteMax", "SoH"),
    120: ("WHRtg", "MaxChaRte", "MaxDisChaRte"),
}
_METER_POINTS = ("W", "TotWhImp", "TotWhExp")


class _SunSpecDevice:
    # The only points each driver ever writes, by model: anything else is refused before the request.
    WRITABLE: ClassVar[Mapping[int, frozenset[str]]] = {}

    def __init__(self, id: str, client: ModbusDeviceClient, *, clock: Clock | None = None) -> None:
        self.id = id
        self.client = client
        self._clock: Clock = clock or WallClock(UTC)
        self._models: dict[int, ModelInstance] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, {self.client.name})"

    async def models(self) -> dict[int, ModelInstance]:
        """Discovered models by id (first instance of each), cached until the map looks changed."""
        if self._models is None:
            found: dict[int, ModelInstance] = {}
            for inst in await discover(self.client):
                found.setdefault(inst.id, inst)
            self._models = found
        return self._models

    async def _pick(self, candidates: Iterable[int], what: str) -> int:
        models = await self.models()
        for mid in candidates:
            if mid in models:
                return mid
        raise DeviceError(f"{self.id}: no SunSpec {what} model (looked for {list(candidates)})")

    async def _read(self, points: Mapping[int, tuple[str, ...]]) -> dict[int, Block]:
        """Decode ``points`` (model id -> names) of the models present, in as few requests as possible."""
        models = await self.models()
        wanted = sorted((models[i] for i in points if i in models), key=lambda m: m.address)
        spans: list[list[ModelInstance]] = []
        for inst in wanted:
            if spans and self._end(inst) - spans[-1][0].address <= MAX_READ_COUNT:
                spans[-1].append(inst)
            else:
                spans.append([inst])
        out: dict[int, Block] = {}
        for span in spans:
            start = span[0].address
            try:
                regs = await self.client.read_holding_registers(start, self._end(span[-1]) - start)
            except ModbusExceptionResponse:
                self._models = None  # the map may have changed: rediscover next time
                raise
            for inst in span:
                block = regs[inst.address - start : self._end(inst) - start]
                if block[0] != inst.id:
                    self._models = None
                    raise DeviceError(f"{self.id}: model {inst.id} not at {inst.address} any more")
                try:
                    out[inst.id] = decode_points(model_def(inst.id), block, points[inst.id])
                except ValueError as exc:
                    raise self._reject(f"model {inst.id}: {exc}") from None
        return out

    @staticmethod
    def _end(inst: ModelInstance) -> int:
        return inst.address + HEADER_LEN + min(inst.length, model_def(inst.id).length)

    def _reject(self, why: str) -> DeviceError:
        self.client.count_out_of_range()
        log.warning("%s: reading rejected: %s", self.id, why)
        return DeviceError(f"{self.id}: reading rejected: {why}")

    def _need(self, block: Block, name: str, model: int) -> float:
        v = block.get(name)
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise self._reject(f"model {model} point {name} is not implemented")
        return float(v)

    def _opt(self, *candidates: tuple[Block | None, str]) -> float | None:
        """The first implemented of the candidate points; a non-finite one (float32 inf) is rejected."""
        for block, name in candidates:
            v = block.get(name) if block is not None else None
            if isinstance(v, int | float):
                if not math.isfinite(v):
                    raise self._reject(f"point {name} = {v}")
                return float(v)
        return None

    def _check(self, ok: bool, why: str) -> None:
        if not ok:
            raise self._reject(why)

    async def _write(self, model: int, raw: dict[str, int]) -> None:
        """Write raw values of contiguous points of ``model`` in one request (only points in WRITABLE)."""
        outside = sorted(set(raw) - self.WRITABLE.get(model, frozenset()))
        if outside:
            raise DeviceError(f"{self.id}: refusing to write model {model} points {outside}: "
                              f"{type(self).__name__} writes only {dict(self.WRITABLE)}")  # fmt: skip
        inst = (await self.models())[model]
        mdef = model_def(model)
        points = sorted((mdef.point(n) for n in raw), key=lambda p: p.offset)
        regs: list[int] = []
        for p in points:
            if p.offset != points[0].offset + len(regs):
                raise ValueError(f"points {list(raw)} of model {model} are not contiguous")
            regs.extend(encode(p.type, raw[p.name], p.size))
        await self.client.write_registers(inst.address + points[0].offset, regs)


class SunSpecPvInverter(_SunSpecDevice):
    """PV inverter over models 1, 101-103 (or 111-113), 120 and/or 121, 123.

    WMaxLimPct is a percent of WMax (121) when the device has it, else of WRtg (120); readings give
    ``limit_pct`` as a percent of the rating. A slightly negative W (night consumption, down to -10 %
    of the rating) reads as 0 kW; anything lower is rejected. ``revert_s`` goes to
    WMaxLimPct_RvrtTms; 0 (the default) keeps a limit until it is lifted, the safe side under a
    zero-export rule if the controller dies.
    """

    WRITABLE: ClassVar[Mapping[int, frozenset[str]]] = {
        123: frozenset({"WMaxLimPct", "WMaxLimPct_WinTms", "WMaxLimPct_RvrtTms", "WMaxLimPct_RmpTms", "WMaxLim_Ena"})
    }

    def __init__(self, id: str, client: ModbusDeviceClient, *, clock: Clock | None = None,
                 revert_s: int = 0) -> None:
        super().__init__(id, client, clock=clock)
        self.revert_s = revert_s
        self._rated_w: float | None = None  # WRtg (120), else WMax (121)
        self._limit_base_w: float | None = None  # what WMaxLimPct is a percent of: WMax, else WRtg
        self._limit_sf: int | None = None  # WMaxLimPct_SF (static)

    async def _nameplate(self) -> tuple[float, float]:
        if self._rated_w is None or self._limit_base_w is None:
            await self._pick((120, 121), "nameplate (120) or settings (121)")
            b = await self._read({120: ("WRtg",), 121: ("WMax",)})
            rated = self._opt((b.get(120), "WRtg"), (b.get(121), "WMax"))
            base = self._opt((b.get(121), "WMax"), (b.get(120), "WRtg"))
            if rated is None or base is None or rated <= 0 or base <= 0:
                raise self._reject("no positive WRtg (model 120) or WMax (model 121)")
            self._rated_w, self._limit_base_w = rated, base
        return self._rated_w, self._limit_base_w

    async def read_pv(self) -> PvReading:
        inv = await self._pick(INVERTER_MODELS, "inverter")
        rated, base = await self._nameplate()
        b = await self._read({inv: _INV_POINTS, 123: _LIMIT_POINTS})
        w = self._need(b[inv], "W", inv)
        self._check(-0.1 * rated <= w <= MAX_RATING_FACTOR * rated, f"W = {w:.0f} W, rating {rated:.0f} W")
        limit_pct: float | None = None
        if 123 in b and b[123].get("WMaxLim_Ena") == 1:
            pct = self._need(b[123], "WMaxLimPct", 123)
            self._check(0 <= pct <= 100, f"WMaxLimPct = {pct} %")
            limit_pct = pct * base / rated
        wh = self._opt((b[inv], "WH"))
        return PvReading(ts=self._clock.now(), p_kw=max(w, 0.0) / 1000, rated_kw=rated / 1000,
                         limit_pct=limit_pct, energy_kwh=None if wh is None else wh / 1000)

    async def set_pv_limit(self, limit_kw: float | None) -> None:
        """Write model 123 WMaxLimPct/_WinTms/_RvrtTms/_RmpTms/WMaxLim_Ena in one request."""
        if limit_kw is not None and not (math.isfinite(limit_kw) and limit_kw >= 0):
            raise ValueError(f"limit_kw must be >= 0 or None, got {limit_kw}")
        _, base = await self._nameplate()
        if self._limit_sf is None:
            await self._pick((123,), "immediate controls (123)")
            sf = (await self._read({123: ("WMaxLimPct_SF",)}))[123].get("WMaxLimPct_SF")
            if not isinstance(sf, int):
                raise self._reject("WMaxLimPct_SF is not implemented")
            self._limit_sf = sf
        sf = self._limit_sf
        pct = 100.0 if limit_kw is None else min(100.0, limit_kw * 1000 / base * 100)
        await self._write(123, {"WMaxLimPct": unscale(pct, sf), "WMaxLimPct_WinTms": 0,
                                "WMaxLimPct_RvrtTms": self.revert_s, "WMaxLimPct_RmpTms": 0,
                                "WMaxLim_Ena": 0 if limit_kw is None else 1})


class SunSpecStorage(_SunSpecDevice):
    """Battery over models 1, 101-103 (optional), 120 (optional), 124, 713 and/or 802.

    ``revert_s`` goes to InOutWRte_RvrtTms: the device idles when no fresh setpoint arrives in time.
    Max charge/discharge come from model 802 WChaRteMax/WDisChaRteMax (what the battery can do now),
    else the model 120 nameplate, else 124 WChaMax.
    """

    WRITABLE: ClassVar[Mapping[int, frozenset[str]]] = {
        124: frozenset({"OutWRte", "InWRte", "InOutWRte_WinTms", "InOutWRte_RvrtTms", "InOutWRte_RmpTms",
                        "StorCtl_Mod"})
    }

    def __init__(self, id: str, client: ModbusDeviceClient, *, clock: Clock | None = None,
                 revert_s: int = 60) -> None:
        super().__init__(id, client, clock=clock)
        self.revert_s = revert_s
        self._ctl: tuple[float, int] | None = None  # (WChaMax W, InOutWRte_SF) from the last 124 read

    def _note_controls(self, b124: Block) -> float:
        wchamax = self._need(b124, "WChaMax", 124)
        self._check(wchamax > 0, f"WChaMax = {wchamax}")
        sf = b124.get("InOutWRte_SF")
        if isinstance(sf, int):
            self._ctl = (wchamax, sf)
        return wchamax

    async def read_battery(self) -> BatteryReading:
        await self._pick((124,), "storage (124)")
        models = await self.models()
        inv = next((m for m in INVERTER_MODELS if m in models), None)
        b = await self._read({124: _CTL_POINTS, **_BATTERY_POINTS, **({} if inv is None else {inv: ("W",)})})
        wchamax = self._note_controls(b[124])
        m713, m802, m120 = b.get(713), b.get(802), b.get(120)
        w = self._opt((b.get(inv) if inv else None, "W"), (m802, "W"))
        soc = self._opt((m713, "SoC"), (b[124], "ChaState"), (m802, "SoC"))
        wh = self._opt((m713, "WHRtg"), (m802, "WHRtg"), (m120, "WHRtg"))
        max_c = self._opt((m802, "WChaRteMax"), (m120, "MaxChaRte"), (b[124], "WChaMax"))
        max_d = self._opt((m802, "WDisChaRteMax"), (m120, "MaxDisChaRte"), (b[124], "WChaMax"))
        soh = self._opt((m713, "SoH"), (m802, "SoH"))
        if w is None or soc is None or wh is None or max_c is None or max_d is None:
            missing = [n for n, v in (("W", w), ("SoC", soc), ("WHRtg", wh), ("WChaRteMax", max_c),
                                      ("WDisChaRteMax", max_d)) if v is None]
            raise self._reject(f"{', '.join(missing)} not implemented")
        limit = MAX_RATING_FACTOR * max(wchamax, max_c, max_d)
        self._check(0 <= soc <= 100, f"SoC = {soc} %")
        self._check(wh > 0, f"WHRtg = {wh} Wh")
        self._check(0 <= max_c <= limit and 0 <= max_d <= limit, f"max charge/discharge {max_c}/{max_d} W")
        self._check(abs(w) <= limit, f"W = {w:.0f} W for WChaMax {wchamax:.0f} W")
        self._check(soh is None or 0 <= soh <= 100, f"SoH = {soh} %")
        return BatteryReading(ts=self._clock.now(), p_kw=w / 1000, soc_pct=soc, capacity_kwh=wh / 1000,
                              max_charge_kw=max_c / 1000, max_discharge_kw=max_d / 1000, soh_pct=soh)

    async def set_battery_power(self, p_kw: float) -> None:
        """Model 124 setpoint, mapped as in the module docstring."""
        if not math.isfinite(p_kw):
            raise ValueError(f"p_kw must be finite, got {p_kw}")
        if self._ctl is None:
            await self._pick((124,), "storage (124)")
            self._note_controls((await self._read({124: _CTL_POINTS}))[124])
        if self._ctl is None:
            raise self._reject("InOutWRte_SF is not implemented")
        wchamax, sf = self._ctl
        pct = min(100.0, abs(p_kw) * 1000 / wchamax * 100)
        out_pct, in_pct = (pct, 0.0) if p_kw > 0 else (0.0, pct)
        mode = 0b10 if p_kw > 0 else 0b01 if p_kw < 0 else 0b11
        await self._write(124, {"OutWRte": unscale(out_pct, sf), "InWRte": unscale(in_pct, sf),
                                "InOutWRte_WinTms": 0, "InOutWRte_RvrtTms": self.revert_s,
                                "InOutWRte_RmpTms": 0})
        await self._write(124, {"StorCtl_Mod": mode})


class SunSpecMeter(_SunSpecDevice):
    """Grid meter over models 1 and 201-204 (or 211-214).

    Sign: W is positive when the park imports from the grid (TotWhImp counts up), matching the
    project convention. ``rated_kw`` (e.g. the connection's import cap) enables the range check.
    """

    def __init__(self, id: str, client: ModbusDeviceClient, *, clock: Clock | None = None,
                 rated_kw: float | None = None) -> None:
        super().__init__(id, client, clock=clock)
        self.rated_kw = rated_kw

    async def read_meter(self) -> MeterReading:
        mid = await self._pick(METER_MODELS, "meter")
        b = (await self._read({mid: _METER_POINTS}))[mid]
        w = self._need(b, "W", mid)
        if self.rated_kw is not None:
            self._check(abs(w) <= MAX_RATING_FACTOR * self.rated_kw * 1000, f"W = {w:.0f} W")
        imp, exp = self._opt((b, "TotWhImp")), self._opt((b, "TotWhExp"))
        return MeterReading(ts=self._clock.now(), p_kw=w / 1000,
                            import_kwh=None if imp is None else imp / 1000,
                            export_kwh=None if exp is None else exp / 1000)
