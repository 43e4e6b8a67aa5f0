"""SunSpec model discovery: find the "SunS" marker, then walk the chain of model headers.

Devices differ in where the map starts (40000 is the standard base, 0 and 50000 occur), so each is
tried in that order; a Modbus exception there just means "not here", while a lost connection is a
real failure and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.modbus_client import ModbusExceptionResponse
from parkctl.errors import DeviceError

log = logging.getLogger(__name__)

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL_ID = 0xFFFF
MAX_MODELS = 100


class RegisterReader(Protocol):
    async def read_holding_registers(self, address: int, count: int) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class ModelInstance:
    id: int
    address: int  # of the model's ID register
    length: int  # the "L" value: registers after the two header registers

    @property
    def end(self) -> int:
        """First address after the model."""
        return self.address + 2 + self.length


async def find_base(client: RegisterReader, bases: Sequence[int] = BASE_ADDRESSES) -> int:
    """Address of the "SunS" marker; DeviceError when none of ``bases`` holds it."""
    for base in bases:
        try:
            regs = await client.read_holding_registers(base, 2)
        except ModbusExceptionResponse:
            continue
        if tuple(regs[:2]) == SUNS_MARKER:
            return base
    raise DeviceError(f"no SunSpec marker 'SunS' at any of {', '.join(map(str, bases))}")


async def discover(
    client: RegisterReader, bases: Sequence[int] = BASE_ADDRESSES
) -> tuple[ModelInstance, ...]:
    """The models a device offers, in register order (end marker excluded)."""
    address = await find_base(client, bases) + 2
    models: list[ModelInstance] = []
    while len(models) < MAX_MODELS:
        if address + 2 > 0x10000:
            raise DeviceError(f"SunSpec model chain runs past the register space at {address}")
        try:
            model_id, length = await client.read_holding_registers(address, 2)
        except ModbusExceptionResponse:
            if not models:
                raise
            log.warning("SunSpec map without end marker after address %d; taking it as the end", address)
            break
        if model_id == END_MODEL_ID:
            break
        models.append(ModelInstance(model_id, address, length))
        address += 2 + length
    else:
        raise DeviceError(f"more than {MAX_MODELS} SunSpec models: not a sane map")
    return tuple(models)
