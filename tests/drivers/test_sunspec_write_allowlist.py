"""SunSpec drivers write only the points they are meant to: anything else is refused before the request."""

from __future__ import annotations

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus_client import ModbusDeviceClient
from drivers.sunspec.codec import encode_block
from drivers.sunspec.models import model_def
from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
from parkctl.errors import DeviceError

SUNS, END = [0x5375, 0x6E53], [0xFFFF, 0]


def test_allow_lists_name_writable_points_only() -> None:
    assert SunSpecMeter.WRITABLE == {}
    for cls in (SunSpecPvInverter, SunSpecStorage):
        for mid, names in cls.WRITABLE.items():
            assert names and all(model_def(mid).point(n).writable for n in names), (cls, mid)


async def test_writes_outside_the_allow_list_never_reach_the_device() -> None:
    image = SUNS + encode_block(model_def(1), {"Mn": "x", "Md": "y", "SN": "z"})
    image += encode_block(model_def(120), {"WRtg": 100_000.0, "WRtg_SF": 2})
    image += encode_block(model_def(121), {"WMax": 100_000.0, "WMax_SF": 2})
    image += encode_block(model_def(123), {"WMaxLimPct": 100.0, "WMaxLimPct_SF": 0, "WMaxLim_Ena": 0, "Conn": 1})
    image += encode_block(model_def(124), {"WChaMax": 50_000.0, "WChaMax_SF": 2, "InOutWRte_SF": 0})
    image += END
    server = ModbusTcpServer(SimDevice(1, simdata=[SimData(40000, values=image, datatype=DataType.REGISTERS)]),
                             address=("127.0.0.1", 0))  # fmt: skip
    await server.serve_forever(background=True)
    port = int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    client = ModbusDeviceClient("127.0.0.1", port, timeout_s=1.0, retries=0)
    try:
        pv, bess, meter = SunSpecPvInverter("pv", client), SunSpecStorage("bess", client), SunSpecMeter("m", client)
        await pv.set_pv_limit(50.0)  # its own points: written
        await bess.set_battery_power(-10.0)
        before = await client.read_holding_registers(40000, 120)
        writes = client.stats.writes_ok
        refused = [
            (pv, 121, {"WMax": 1}),  # another model
            (pv, 123, {"WMaxLimPct": 10, "Conn": 0}),  # one point too many: nothing is written
            (pv, 124, {"StorCtl_Mod": 1}),  # a storage point, from a PV driver
            (bess, 123, {"WMaxLim_Ena": 1}),
            (bess, 124, {"WChaMax": 1}),  # rating, not a setpoint
            (meter, 124, {"StorCtl_Mod": 1}),
        ]
        for dev, mid, raw in refused:
            with pytest.raises(DeviceError, match=f"refusing to write model {mid} points"):
                await dev._write(mid, raw)
        assert client.stats.writes_ok == writes and client.stats.write_errors == 0
        assert await client.read_holding_registers(40000, 120) == before
    finally:
        client.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
