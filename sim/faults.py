"""Fault schedules of a scenario: what goes wrong in the simulated park, to whom, and when.

Times are offsets from the scenario start (``start: "07:30:00"``, ``"PT90M"`` or seconds), never
clock times: a schedule then means the same whatever day the scenario is moved to, and a property
test can draw offsets directly. Every fault but ``controller_restart`` has an ``end`` after its
``start``; a restart happens at ``start`` and, with an ``end``, the controller stays down until then.

What each kind does (see :mod:`sim.fault_inject` for the mechanisms):

=====================  ========  =================================================================
kind                   target    effect while active
=====================  ========  =================================================================
modbus_down            device    the device's Modbus server stops listening (connection refused)
modbus_slow            device    every answer is held back ``delay_s`` wall-clock seconds
modbus_garbage         device    reads return random registers (seeded by ``seed``)
meter_stale            (meter)   the meter's registers stop following the park (frozen)
load_no_ack            load      the MQTT load ignores commands: no ack, nothing applied
load_malformed         load      the MQTT load publishes malformed state payloads
broker_restart         -         the private Mosquitto is stopped, and started again at ``end``
forecast_nan           -         forecasts issued in the window carry NaN steps
forecast_gap           -         forecasts issued in the window miss their last steps
optimizer_timeout      -         solves started in the window do not return (TimeoutError)
optimizer_infeasible   -         solves started in the window get an import cap nothing can meet
controller_restart     -         the controller is killed (in-process) and built again
=====================  ========  =================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal[
    "modbus_down", "modbus_slow", "modbus_garbage", "meter_stale", "load_no_ack", "load_malformed",
    "broker_restart", "forecast_nan", "forecast_gap", "optimizer_timeout", "optimizer_infeasible",
    "controller_restart",
]  # fmt: skip
MODBUS_KINDS = frozenset({"modbus_down", "modbus_slow", "modbus_garbage"})
LOAD_KINDS = frozenset({"load_no_ack", "load_malformed"})
PLANNER_KINDS = frozenset({"forecast_nan", "forecast_gap", "optimizer_timeout", "optimizer_infeasible"})
METER_ID = "meter"  # the grid meter's device id (sim.sunspec_images.METER_ID)


class Fault(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    target: str | None = Field(default=None, description="device id (modbus_*), load id (load_*)")
    start: timedelta = Field(description="offset from the scenario start")
    end: timedelta | None = Field(default=None, description="offset from the scenario start")
    delay_s: float | None = Field(default=None, gt=0, le=30, description="modbus_slow: wall-clock delay")
    seed: int = Field(default=0, description="modbus_garbage: seed of the random registers")

    @model_validator(mode="after")
    def _check(self) -> Fault:
        k = self.kind
        if self.start < timedelta(0):
            raise ValueError(f"{k}: start must not be before the scenario start (offset >= 0)")
        if self.end is None and k != "controller_restart":
            raise ValueError(f"{k}: end is required")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{k}: end must be after start")
        needs_target = k in MODBUS_KINDS or k in LOAD_KINDS
        if needs_target and not self.target:
            raise ValueError(f"{k}: target (the {'load' if k in LOAD_KINDS else 'device'} id) is required")
        if k == "meter_stale" and self.target not in (None, METER_ID):
            raise ValueError(f"meter_stale: target must be {METER_ID!r} or left out")
        if not needs_target and k != "meter_stale" and self.target is not None:
            raise ValueError(f"{k}: takes no target")
        if (self.delay_s is not None) != (k == "modbus_slow"):
            raise ValueError("delay_s is required for modbus_slow and only allowed there")
        return self

    @property
    def device(self) -> str:
        """The device the fault hits ('' for the site as a whole)."""
        return METER_ID if self.kind == "meter_stale" else (self.target or "")

    @property
    def stop(self) -> timedelta:
        """When the fault is over (a restart without downtime is over at once)."""
        return self.end if self.end is not None else self.start

    def label(self) -> str:
        return f"{self.kind}{f'({self.device})' if self.device else ''}@{self.start}"


def check_faults(faults: Sequence[Fault], device_ids: Iterable[str], load_ids: Iterable[str]) -> None:
    """Targets must exist; the same kind must not overlap itself on one target (ValueError names them)."""
    devices, loads = set(device_ids) | {METER_ID}, set(load_ids)
    for i, f in enumerate(faults):
        if f.kind in MODBUS_KINDS and f.target not in devices:
            raise ValueError(f"faults[{i}]: unknown device {f.target!r}; known: {sorted(devices)}")
        if f.kind in LOAD_KINDS and f.target not in loads:
            raise ValueError(f"faults[{i}]: unknown load {f.target!r}; known: {sorted(loads)}")
    for i, a in enumerate(faults):
        for j in range(i + 1, len(faults)):
            b = faults[j]
            if a.kind == b.kind and a.device == b.device and a.start < b.stop and b.start < a.stop:
                raise ValueError(f"faults[{i}] and faults[{j}]: two {a.kind} faults on {a.device or 'the site'}"
                                 " overlap")  # fmt: skip
