"""Register decoding faces whatever a device (or a broken gateway) returns: arbitrary registers decode
or raise the documented errors (ValueError in the codec, DeviceError from a driver), and no reading
ever carries NaN or inf."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus_client import ModbusDeviceClient
from drivers.sunspec.codec import decode_block, decode_points
from drivers.sunspec.models import HEADER_LEN, model_def
from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
from parkctl.errors import DeviceError

MODELS = (1, 101, 102, 103, 111, 112, 113, 120, 121, 123, 124, 201, 202, 203, 204, 211, 212, 213, 214, 713, 802)
# the patterns codecs treat specially: not implemented (int and uint), float32 inf/NaN high words, extremes
SPECIAL = (0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0xFFFE, 0x7F80, 0xFF80, 0x7FC0, 0x0A, 0xFFF6, 0x000B)
register = st.integers(0, 0xFFFF) | st.sampled_from(SPECIAL)
SUNS, END = [0x5375, 0x6E53], [0xFFFF, 0]
OUTCOMES: Counter[str] = Counter()  # how many fuzzed readings came through: the test is not vacuous


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MODELS), st.data())
def test_codec_decodes_or_raises_value_error(mid: int, data: st.DataObject) -> None:
    m = model_def(mid)
    regs = data.draw(st.lists(register, max_size=HEADER_LEN + m.length + 3))
    names = data.draw(st.lists(st.sampled_from([p.name for p in m.points] + ["NoSuchPoint"]), max_size=10))
    try:
        out = decode_points(m, regs, names)
    except ValueError:
        try:
            decode_block(m, regs)
        except ValueError:
            return
        raise AssertionError("decode_points refused a block decode_block accepts") from None
    whole = decode_block(m, regs)
    for name, v in out.items():
        assert v is None or isinstance(v, int | float | str)
        assert not (isinstance(v, float) and math.isnan(v)), name  # NaN means "not implemented": None
        assert _same(v, whole.get(name)), name


# scale factors mostly valid (else nearly every block is refused and the readings go untested)
scale_factor = st.integers(-4, 4).map(lambda sf: sf & 0xFFFF) | register
# float32 points: +inf, -inf, NaN, the largest finite value, or any two registers
float32 = st.sampled_from([[0x7F80, 0], [0xFF80, 0], [0x7FC0, 0], [0x7F7F, 0xFFFF]])
float32 |= st.lists(register, min_size=2, max_size=2)


def _block(mid: int, data: st.DataObject) -> list[int]:
    m = model_def(mid)
    regs = [mid, m.length, *data.draw(st.lists(register, min_size=m.length, max_size=m.length))]
    for p in m.points:
        if p.type == "sunssf" and p.offset < len(regs):
            regs[p.offset] = data.draw(scale_factor)
        elif p.type == "float32" and p.offset + 1 < len(regs):
            regs[p.offset : p.offset + 2] = data.draw(float32)
    return regs


def _finite(reading: object) -> None:
    for f in dataclasses.fields(reading):  # type: ignore[arg-type]
        v = getattr(reading, f.name)
        if isinstance(v, float):
            assert math.isfinite(v), (type(reading).__name__, f.name, v)


async def _read_all(images: dict[int, list[int]]) -> None:
    devices = [SimDevice(unit, simdata=[SimData(40000, values=regs, datatype=DataType.REGISTERS)])
               for unit, regs in images.items()]  # fmt: skip
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    clients = {u: ModbusDeviceClient("127.0.0.1", port, unit_id=u, timeout_s=1.0, retries=0) for u in images}
    try:
        pv = SunSpecPvInverter("pv", clients[1])
        bess = SunSpecStorage("bess", clients[2])
        meter = SunSpecMeter("meter", clients[3], rated_kw=6300)
        for read in (pv.read_pv, bess.read_battery, meter.read_meter):
            try:
                _finite(await read())
                OUTCOMES["read"] += 1
            except DeviceError:  # the documented refusal (implausible, not implemented, bad scale factor, ...)
                OUTCOMES["refused"] += 1
    finally:
        for c in clients.values():
            c.close()
        await server.shutdown()  # type: ignore[no-untyped-call]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
@given(st.data())
def test_device_readings_are_finite_or_refused(data: st.DataObject) -> None:
    """Real Modbus TCP: each device's model chain is intact, every register in it arbitrary."""
    inverter = data.draw(st.sampled_from((103, 113)))
    chains = {
        1: (1, inverter, 120, 121, 123),
        2: (1, 103, 120, 124, 713, 802),
        3: (1, data.draw(st.sampled_from((203, 213)))),
    }
    images = {unit: SUNS + [r for mid in chain for r in _block(mid, data)] + END for unit, chain in chains.items()}
    asyncio.run(_read_all(images))


def test_the_device_fuzz_reached_readings() -> None:
    """Runs after the fuzz above (file order): some arbitrary blocks must decode into readings."""
    if not OUTCOMES:
        import pytest

        pytest.skip("the device fuzz did not run in this session")
    assert OUTCOMES["read"] > 0 and OUTCOMES["refused"] > 0, OUTCOMES
