"""``parkctl check-config FILE [--probe]``: is this configuration valid, and can it reach every device?

Commissioning goes wrong in boring ways: a port off by one, a wrong unit id, a nameplate typed from
the wrong datasheet, a load that never came online. This check finds them before the controller runs.
Without ``--probe`` it only validates the file (the error names the field and the reason). With it,
every Modbus device gets SunSpec discovery and one real reading through the production drivers, and
the MQTT broker is asked which load availability topics are retained online or offline. Each probe has
its own small time budget and they run side by side, so one dead device neither hides nor delays the
others. Exit status: 0 all ok, 1 some device failed, 2 the configuration is invalid.

The MQTT probe connects under its own client id with a clean session: reusing the controller's id
would make the broker drop a running controller's connection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from controller.config import ControllerConfig, ModbusDeviceConfig, load_config
from controller.mqtt_auth import session_settings
from drivers import topics as tp
from drivers.modbus_client import ModbusDeviceClient
from drivers.mqtt_session import describe_failure
from drivers.mqtt_url import parse_mqtt_url
from drivers.sunspec.codec import decode_block
from drivers.sunspec.discovery import ModelInstance
from drivers.sunspec.models import HEADER_LEN, model_def
from drivers.sunspec_devices import (
    INVERTER_MODELS,
    METER_MODELS,
    SunSpecMeter,
    SunSpecPvInverter,
    SunSpecStorage,
)
from parkctl.argtypes import bounded_float
from parkctl.errors import ConfigError

DEFAULT_TIMEOUT_S = 3.0  # per device, for connect + discovery + two readings
RETAINED_QUIET_S = 0.3  # retained messages come in one burst after SUBACK; this much silence ends it
NAMEPLATE_TOLERANCE = 0.01  # relative; below 1 kW any difference is rounding
_RETRY_NOTE = re.compile(r" \(retry in [0-9.]+ s\)$")


@dataclass(frozen=True, slots=True)
class CheckRow:
    """The outcome of probing one device, the broker or one load."""

    name: str
    kind: str  # pv, storage, meter, broker, load, sqlite
    endpoint: str
    ok: bool
    detail: str
    latency_ms: float | None = None
    models: tuple[int, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    source: str
    config: ControllerConfig | None = None
    error: str | None = None  # why the configuration is invalid
    rows: tuple[CheckRow, ...] = ()
    probed: bool = False

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return 2
        return 1 if any(not r.ok for r in self.rows) else 0

    def render(self) -> str:
        """The report as a plain-text table."""
        if self.error is not None or self.config is None:
            return f"INVALID {self.error}"
        c = self.config
        lines = [f"{self.source}: valid; site {c.site.name}, {len(c.modbus)} Modbus devices, {len(c.loads)} loads,"
                 f" strategy {c.strategy}, cycle {c.cycle.period_s:g} s"]  # fmt: skip
        if not self.probed:
            lines.append("not probed (add --probe to connect to every device)")
            return "\n".join(lines)
        head = ("DEVICE", "KIND", "ENDPOINT", "RESULT", "LATENCY", "MODELS", "DETAIL")
        table = [head] + [
            (r.name, r.kind, r.endpoint, "ok" if r.ok else "FAIL",
             "" if r.latency_ms is None else f"{r.latency_ms:.1f} ms", ",".join(map(str, r.models)), r.detail)
            for r in self.rows
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
        for row in table:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
        failed = sum(not r.ok for r in self.rows)
        lines.append(f"{failed} of {len(self.rows)} checks failed" if failed else f"all {len(self.rows)} checks ok")
        return "\n".join(lines)


# -- validation --------------------------------------------------------------------------------------


def validate(path: str | Path) -> ControllerConfig:
    """load_config plus what the model does not check yet: the MQTT URL and doubled Modbus endpoints."""
    config = load_config(path)
    if config.mqtt is not None:
        try:
            parse_mqtt_url(config.mqtt.url)
        except ConfigError as exc:
            url = config.mqtt.url  # the message quotes it: never print what may be a password
            why = str(exc).removeprefix("--mqtt-url ").replace(url, re.sub(r"://.*@", "://***@", url))
            raise ConfigError(f"{path}: field 'mqtt.url': {why}") from None
    seen: dict[tuple[str, int, int], str] = {}
    for i, d in enumerate(config.modbus):
        other = seen.setdefault((d.host, d.port, d.unit_id), d.id)
        if other != d.id:
            raise ConfigError(f"{path}: field 'modbus.{i}': {d.id!r} has the same host, port and unit id "
                              f"as {other!r} ({d.host}:{d.port} unit {d.unit_id})")  # fmt: skip
    return config


# -- Modbus --------------------------------------------------------------------------------------------


def _mismatch(found_kw: float, configured_kw: float) -> bool:
    return abs(found_kw - configured_kw) > max(1.0, NAMEPLATE_TOLERANCE * configured_kw)


async def _nameplate_kw(client: ModbusDeviceClient, models: dict[int, ModelInstance]) -> float | None:
    """WRtg of model 120, when the device has it."""
    inst = models.get(120)
    if inst is None:
        return None
    mdef = model_def(120)
    regs = await client.read_holding_registers(inst.address, HEADER_LEN + min(inst.length, mdef.length))
    w = decode_block(mdef, regs).get("WRtg")
    return float(w) / 1000 if isinstance(w, int | float) else None


REQUIRED_MODELS: dict[str, list[tuple[tuple[int, ...], str]]] = {
    "pv": [
        (INVERTER_MODELS, "inverter (101-103/111-113)"),
        ((120, 121), "nameplate or settings (120/121)"),
        ((123,), "immediate controls (123), so PV cannot be capped"),
    ],
    "storage": [((124,), "storage controls (124)")],
    "meter": [(METER_MODELS, "meter (201-204/211-214)")],
}


def _missing_models(kind: str, models: dict[int, ModelInstance]) -> str | None:
    need = REQUIRED_MODELS[kind]
    for ids, what in need:
        if not any(i in models for i in ids):
            return f"no SunSpec {what}"
    return None


SunSpecDriver = SunSpecPvInverter | SunSpecStorage | SunSpecMeter


def _driver(d: ModbusDeviceConfig, client: ModbusDeviceClient, config: ControllerConfig) -> SunSpecDriver:
    if d.kind == "pv":
        return SunSpecPvInverter(d.id, client)
    if d.kind == "storage":
        return SunSpecStorage(d.id, client)
    return SunSpecMeter(d.id, client, rated_kw=config.grid.import_cap_kw)


async def _read(dev: SunSpecDriver) -> tuple[str, float | None]:
    """One reading through the production driver, formatted, and the nameplate it reports (PV only)."""
    if isinstance(dev, SunSpecPvInverter):
        pv = await dev.read_pv()
        limit = "" if pv.limit_pct is None else f", limited to {pv.limit_pct:.0f} %"
        return f"P {pv.p_kw:.1f} kW of {pv.rated_kw:g} kW{limit}", pv.rated_kw
    if isinstance(dev, SunSpecStorage):
        b = await dev.read_battery()
        return f"P {b.p_kw:+.1f} kW, SoC {b.soc_pct:.1f} % of {b.capacity_kwh:g} kWh", None
    return f"grid {(await dev.read_meter()).p_kw:+.1f} kW (+ import)", None


async def probe_modbus(d: ModbusDeviceConfig, config: ControllerConfig, timeout_s: float) -> CheckRow:
    """Discovery, then two readings through the production driver; the second one is timed.

    All devices are probed at once, as the cycle reads them, so the latency is what a cycle would see.
    """
    endpoint = f"{d.host}:{d.port} unit {d.unit_id}"
    client = ModbusDeviceClient(d.host, d.port, unit_id=d.unit_id, name=d.id, retries=0,
                                timeout_s=min(d.timeout_s, timeout_s))  # fmt: skip
    dev = _driver(d, client, config)
    found: tuple[int, ...] = ()
    try:
        async with asyncio.timeout(timeout_s):
            models = await dev.models()
            found = tuple(sorted(models))
            missing = _missing_models(d.kind, models)
            if missing:
                return CheckRow(d.id, d.kind, endpoint, False, missing, models=found)
            _, rated_kw = await _read(dev)  # first reading also caches the nameplate
            if rated_kw is None and d.rated_kw is not None:
                rated_kw = await _nameplate_kw(client, models)
            t0 = time.perf_counter()
            value, _ = await _read(dev)
            latency_ms = (time.perf_counter() - t0) * 1000
    except TimeoutError:
        return CheckRow(d.id, d.kind, endpoint, False, f"no complete answer within {timeout_s:g} s", models=found)
    except Exception as exc:  # any failure of one device is that device's row, never the end of the check
        why = _RETRY_NOTE.sub("", str(exc)) or repr(exc)  # a one-shot check will not retry
        return CheckRow(d.id, d.kind, endpoint, False, why, models=found)
    finally:
        client.close()
    if d.rated_kw is not None and rated_kw is not None and _mismatch(rated_kw, d.rated_kw):
        detail = f"nameplate {rated_kw:g} kW but rated_kw {d.rated_kw:g} configured; {value}"
        return CheckRow(d.id, d.kind, endpoint, False, detail, latency_ms, found)
    return CheckRow(d.id, d.kind, endpoint, True, value, latency_ms, found)


# -- MQTT ----------------------------------------------------------------------------------------------


async def _retained(
    client: aiomqtt.Client, done: Callable[[dict[str, bytes]], bool], deadline: float
) -> dict[str, bytes]:
    """Topic -> payload of the retained burst: until ``done``, a quiet gap, or the deadline."""
    got: dict[str, bytes] = {}
    loop = asyncio.get_running_loop()
    messages = client.messages.__aiter__()
    while not done(got):
        wait = min(RETAINED_QUIET_S, deadline - loop.time())
        if wait <= 0:
            break
        try:
            msg = await asyncio.wait_for(messages.__anext__(), wait)
        except TimeoutError:
            break
        payload = msg.payload
        got[msg.topic.value] = payload if isinstance(payload, bytes) else str(payload).encode()
    return got


def _load_row(config: ControllerConfig, load_id: str, got: dict[str, bytes]) -> CheckRow:
    site = config.site.name
    topic = tp.load_topic(site, load_id, "availability")
    avail = got.get(topic)
    state = ""
    raw = got.get(tp.load_topic(site, load_id, "state"))
    if raw is not None:
        try:
            s = tp.StateReport.decode(raw)
            state = f"; last state {s.p_kw:.1f} kW {'running' if s.running else 'shed'} at {s.ts:%Y-%m-%d %H:%M:%S%z}"
        except tp.PayloadError as exc:
            state = f"; retained state unreadable ({exc})"
    if avail is None:
        return CheckRow(load_id, "load", topic, False, "no retained availability: device never connected?" + state)
    if avail == tp.ONLINE:
        return CheckRow(load_id, "load", topic, True, "online" + state)
    return CheckRow(load_id, "load", topic, False, f"availability {avail[:16].decode(errors='replace')!r}" + state)


async def probe_mqtt(config: ControllerConfig, timeout_s: float) -> list[CheckRow]:
    """Connect to the broker and read the retained availability (and state) of every configured load."""
    assert config.mqtt is not None
    try:
        url = session_settings(config.mqtt, os.environ)
    except ConfigError as exc:
        return [CheckRow("mqtt", "broker", config.mqtt.url, False, str(exc))]
    site = config.site.name
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    wanted = {tp.load_topic(site, ld.id, kind) for ld in config.loads for kind in ("availability", "state")}
    try:
        async with asyncio.timeout(timeout_s):
            t0 = time.perf_counter()
            async with url.client(f"{config.mqtt.client_id}-check-{os.getpid()}", timeout_s=timeout_s) as client:
                latency_ms = (time.perf_counter() - t0) * 1000
                await client.subscribe([(tp.load_wildcard(site, "availability"), 1),
                                        (tp.load_wildcard(site, "state"), 1),
                                        (tp.controller_status_topic(site), 1)])  # fmt: skip
                got = await _retained(client, lambda g: wanted <= g.keys(), deadline - 0.1)
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        rows = [CheckRow("mqtt", "broker", str(url), False, f"cannot connect: {describe_failure(exc)}")]
        return rows + [CheckRow(ld.id, "load", tp.load_topic(site, ld.id, "availability"), False,
                                "not checked: no broker") for ld in config.loads]  # fmt: skip
    status = got.get(tp.controller_status_topic(site))
    who = "none retained" if status is None else status[:16].decode(errors="replace")
    rows = [CheckRow("mqtt", "broker", str(url), True, f"connected; controller status: {who}", latency_ms)]
    return rows + [_load_row(config, ld.id, got) for ld in config.loads]


# -- local files ---------------------------------------------------------------------------------------


def check_storage(config: ControllerConfig) -> CheckRow | None:
    """Can this process create or write the SQLite history? (None for ':memory:')

    A read-only path (systemd ProtectSystem=strict without the StateDirectory) only shows at the first
    write otherwise. Run the check as the service's user for the answer that counts.
    """
    path = Path(config.storage.path)
    if config.storage.path == ":memory:":
        return None
    target = path if path.exists() else path.parent
    if not target.exists():
        return CheckRow("history", "sqlite", str(path), False, f"directory {str(path.parent)!r} does not exist")
    ok = os.access(target, os.W_OK)
    what = "file" if target is path else "directory"
    detail = f"{what} writable" if ok else f"{what} not writable by uid {os.getuid()}"
    return CheckRow("history", "sqlite", str(path), ok, detail)


# -- entry points --------------------------------------------------------------------------------------


async def probe(config: ControllerConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[CheckRow, ...]:
    """The history file, then every Modbus device and the broker (concurrently), in configuration order."""
    jobs: list[Awaitable[CheckRow | list[CheckRow]]] = [probe_modbus(d, config, timeout_s) for d in config.modbus]
    if config.mqtt is not None:
        jobs.append(probe_mqtt(config, timeout_s))
    storage = check_storage(config)
    rows: list[CheckRow] = [] if storage is None else [storage]
    for result in await asyncio.gather(*jobs):
        rows.extend(result if isinstance(result, list) else [result])
    return tuple(rows)


async def acheck_config(path: str | Path, probe_devices: bool, timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckReport:
    """:func:`check_config` for callers already inside an event loop."""
    try:
        config = validate(path)
    except ConfigError as exc:
        return CheckReport(str(path), error=str(exc))
    rows = await probe(config, timeout_s) if probe_devices else ()
    return CheckReport(str(path), config, rows=rows, probed=probe_devices)


def check_config(path: str | Path, probe: bool, timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckReport:
    """Validate ``path``; with ``probe``, also connect to every device it names."""
    return asyncio.run(acheck_config(path, probe, timeout_s))


# -- command line --------------------------------------------------------------------------------------




def add_check_config_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``check-config`` on the ``parkctl`` subparsers (its handler is :func:`cmd_check_config`)."""
    p = subparsers.add_parser(
        "check-config", help="validate a controller configuration; --probe also reaches every device",
        description="Exit status: 0 all ok, 1 some device failed, 2 the configuration is invalid.",
    )  # fmt: skip
    p.add_argument("file", type=Path, metavar="FILE", help="controller configuration (YAML)")
    p.add_argument(
        "--probe",
        action="store_true",
        help="connect to every Modbus device and the MQTT broker, read one value from each",
    )
    p.add_argument(
        "--timeout",
        type=bounded_float("timeout", 0, 60, "s"),
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"time budget per device (default {DEFAULT_TIMEOUT_S:g} s)",
    )
    p.set_defaults(handler=cmd_check_config)
    return p


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the report; an invalid file is one line on stderr, as every parkctl error."""
    report = check_config(args.file, args.probe, args.timeout)
    if report.error is not None:
        print(f"parkctl: error: {report.error}", file=sys.stderr)
    else:
        print(report.render())
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m controller.check FILE [--probe]`` until the subcommand is wired into parkctl."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs each refused connect; the table says it
    parser = argparse.ArgumentParser(prog="parkctl")
    add_check_config_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_check_config(parser.parse_args(["check-config", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
