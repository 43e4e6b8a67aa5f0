"""The kill drill of issue 7: a real ``parkctl run`` process SIGKILLed in the middle of a demand-response
event, started again on the same database, in front of a simulated park.

Unlike :mod:`sim.controller_slot` (an in-process emulation on the shared :class:`~parkctl.clock.SimClock`),
the controller here is a separate OS process: the kernel kills it wherever it is. Park and controller
agree on the time through a :class:`~parkctl.clock.ScaledClock` (same start, anchor and speed; the
controller gets them as ``--sim-clock``), so the park keeps running while the controller is dead and
while the new one starts, as on a site.

The drill, in the park's process (this one): start a private Mosquitto, write the scenario's prior days
into a fresh database (DR baselines need them), start the park at ``start``, spawn the controller, send
the scenario's demand-response calls once it cycles (as ``REAL_TIME`` calls: the drill starts too late for
their day-ahead notice), SIGKILL it at ``kill_at`` and spawn a new one at once (or ``restart_pause_s``
later), SIGTERM that one at ``end``, from inside the first setpoint a device applies from then on (a clean
stop must not lose the cycle under way either). Where the kill lands (``kill_mode``):

- ``between_cycles``: once the cycle of the current control period is committed and the next one is not
  due yet; everything the park saw must then be in the database.
- ``on_write``: from inside the park's Modbus server, at the first setpoint a simulated device applies at
  or after ``kill_at``, before its answer leaves; the adversarial case, a write on the wire.

What the park saw is counted on the park's side (setpoints its Modbus servers and MQTT loads took; alarms
and plans from the controller's telemetry topics) and looked for in the database afterwards with
:func:`sim.fault_report.build_report`. Import above the event's cap is measured from the park's meter once
per physics step and split into seconds inside the kill window (from the kill until ``SETTLE_S`` after
the new process's first cycle) and outside it, which the controller alone answers for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

import aiomqtt
import yaml

from controller.config import ControllerConfig
from controller.telemetry import controller_topic
from dr.mqtt import send_event, sender_endpoint
from dr.wire import encode_event
from parkctl.clock import ScaledClock, ceil_to
from sim import fault_report
from sim.broker import PrivateMosquitto
from sim.day import controller_config_for, running_park
from sim.fault_inject import SETTLE_S
from sim.modbus_server import SunSpecServer
from sim.park import Park
from sim.prior_history import seed_history
from sim.scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

KillMode = Literal["between_cycles", "on_write"]
POLL_S = 0.02  # wall: how often the drill looks at the database while it waits for a condition
ACK_TIMEOUT_S = 10.0
ALARM_SLACK = timedelta(seconds=60)  # sim time between an alarm's row and its telemetry message, at most


class DrillError(RuntimeError):
    """The drill could not be carried out (a process did not start, a condition never came)."""


@dataclass(frozen=True)
class DrillOptions:
    out_dir: Path
    scenario: str = "faults-day"
    start: str = "15:45"  # local times on the scenario's day
    kill_at: str = "16:12"
    end: str = "16:35"
    speed: float = 40.0
    strategy: str = "rules"
    kill_mode: KillMode = "between_cycles"
    restart_pause_s: float = 0.0  # wall seconds between the kill and the new process
    history_days: int | None = None  # None: the scenario's demand_response.history_days
    timeout_s: float = 60.0  # wall: the longest any one wait may take before the drill gives up
    command: tuple[str, ...] = (sys.executable, "-m", "parkctl.cli")


@dataclass
class DrillResult:
    options: dict[str, Any]
    wall_s: float
    history_s: float
    kill_ts: str
    killed_returncode: int | None
    restart_pause_s: float
    first_cycle_s: float  # wall, from spawn to the first cycle of the first process
    restart_to_first_cycle_s: float  # wall, from the new process's spawn to its first cycle
    down_sim_s: float  # the park without a controller: kill to the new process's first cycle, sim seconds
    final_returncode: int | None
    stopped_on_write: bool  # the SIGTERM came from inside a device's write (else: no write came for 4 cycles)
    kill_window: tuple[str, str]
    dr_cap_kw: float | None
    over_cap_in_window_s: float
    over_cap_before_kill_s: float
    over_cap_after_window_s: float
    peak_import_kw_in_event: float
    over_cap_episodes: list[dict[str, Any]]
    dr_ack: str | None
    telemetry_alarms: list[dict[str, str]]
    telemetry_plans: int
    lost: dict[str, Any]
    report: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        rec = self.report["records"]
        sp, al, pl, dr = rec["setpoints"], rec["alarms"], rec["plans"], rec["dr_intervals"]
        o = self.options
        return "\n".join((
            f"kill drill: scenario {o['scenario']}, {o['start']}..{o['end']} at {o['speed']:g}x, strategy"
            f" {o['strategy']}, SIGKILL {o['kill_mode']} at {self.kill_ts} (exit {self.killed_returncode}),"
            f" restart after {self.restart_pause_s:.2f} s,"
            f" SIGTERM at the end{' on a write' if self.stopped_on_write else ''}"
            f" (exit {self.final_returncode})",
            f"  wall {self.wall_s:.1f} s (prior history {self.history_s:.1f} s); first cycle {self.first_cycle_s:.2f} s"
            f" after spawn; restart to first cycle {self.restart_to_first_cycle_s:.2f} s wall"
            f" ({self.down_sim_s:.0f} s of park time without a controller)",
            f"  records, park / db: setpoints {sp['park_received']} / {sp['db_rows']} (lost {sp['lost_by_device']}),"
            f" alarms raised {al['raised']} / {al['db_rows']}, plans {pl['made']} / {pl['db_rows']},"
            f" DR quarter-hours {dr['expected_slots']} / {dr['db_slots']} (complete {dr['complete_slots']})",
            f"  DR cap {self.dr_cap_kw} kW: over it {self.over_cap_before_kill_s:.0f} s before the kill,"
            f" {self.over_cap_in_window_s:.0f} s in the kill window"
            f" {self.kill_window[0][11:19]}..{self.kill_window[1][11:19]}"
            f" (kill + {SETTLE_S:.0f} s after the first cycle of the new process), {self.over_cap_after_window_s:.0f} s"
            f" after it; peak import in the event {self.peak_import_kw_in_event:.0f} kW",
            f"  lost records: {self.lost}",
        ))  # fmt: skip


def _local(scenario: Scenario, hhmm: str) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return scenario.local_start.replace(hour=h, minute=m, second=0, microsecond=0)


def drill_scenario(scenario: Scenario, start: datetime, history_days: int | None) -> Scenario:
    """The scenario from ``start`` on, without its fault schedule (the kill is the only fault)."""
    update: dict[str, Any] = {"start": start, "faults": []}
    if scenario.demand_response is not None and history_days is not None:
        update["demand_response"] = scenario.demand_response.model_copy(update={"history_days": history_days})
    return scenario.model_copy(update=update)


def write_config(config: ControllerConfig, path: Path) -> Path:
    """The configuration as an operator would put it on the box (checked to read back the same)."""
    data = config.model_dump(mode="json", exclude_none=True)
    if ControllerConfig.model_validate(data) != config:
        raise DrillError("the controller configuration does not survive a YAML round trip")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class Meter:
    """Samples the park's grid power once per physics step (which also keeps its physics moving)."""

    def __init__(self, park: Park, clock: ScaledClock, step: timedelta) -> None:
        self.park, self.clock, self.step = park, clock, step
        self.samples: list[tuple[datetime, float]] = []
        self.violations: list[tuple[datetime, float]] = []  # (t, cumulative violation s of the park's caps)

    def violation_s(self) -> float:
        k = self.park.kpis()
        return k["export_limit_violation_s"] + k["import_limit_violation_s"]

    async def run(self) -> None:
        t = self.clock.now()
        n = 0
        while True:
            t += self.step
            await self.clock.sleep_until(t)
            m = self.park.meter_state()
            self.samples.append((m.ts, m.p_kw))
            n += 1
            if n % 60 == 0:
                self.violations.append((m.ts, self.violation_s()))

    def over_cap_s(self, cap_kw: float, windows: Sequence[tuple[datetime, datetime]]) -> float:
        """Seconds within ``windows`` with the import above ``cap_kw`` (each sample holds until the next)."""
        total = 0.0
        for (t0, p), (t1, _) in zip(self.samples, self.samples[1:], strict=False):
            if p > cap_kw:
                for a, b in windows:
                    total += max(0.0, (min(t1, b) - max(t0, a)).total_seconds())
        return total


    def episodes(self, cap_kw: float, windows: Sequence[tuple[datetime, datetime]]) -> list[dict[str, Any]]:
        """Runs of samples above ``cap_kw`` inside ``windows``: start, end (first sample back under), peak."""
        out: list[dict[str, Any]] = []
        run: list[tuple[datetime, float]] = []
        for t, p in self.samples:
            inside = any(a <= t < b for a, b in windows)
            if inside and p > cap_kw:
                run.append((t, p))
                continue
            if run:
                out.append({"start": run[0][0].isoformat(), "end": t.isoformat(),
                            "peak_kw": round(max(x for _, x in run), 1)})  # fmt: skip
                run = []
        if run:
            out.append({"start": run[0][0].isoformat(), "end": None, "peak_kw": round(max(x for _, x in run), 1)})
        return out


class TelemetryTap:
    """What the park can see of the controller's alarms and plans: its telemetry topics."""

    def __init__(self, host: str, port: int, site: str) -> None:
        self.host, self.port, self.site = host, port, site
        self.alarms: dict[tuple[str, str, str, str], dict[str, str]] = {}  # deduplicated (QoS 1 may repeat)
        self.plans: set[bytes] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        alarm_topic, plan_topic = controller_topic(self.site, "alarm"), controller_topic(self.site, "plan")
        async with aiomqtt.Client(self.host, self.port, identifier=f"kill-drill-tap-{os.getpid()}") as client:
            await client.subscribe(alarm_topic, qos=1)
            await client.subscribe(plan_topic, qos=1)
            self.ready.set()
            async for msg in client.messages:
                raw = bytes(msg.payload) if isinstance(msg.payload, bytes | bytearray) else b""
                if msg.topic.matches(plan_topic):
                    self.plans.add(raw)
                    continue
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    a = json.loads(raw)
                    key = (str(a["state"]), str(a["code"]), str(a["device"]), str(a["ts"]))
                    self.alarms[key] = {"state": key[0], "code": key[1], "device": key[2], "ts": key[3]}

    def raised(self) -> list[dict[str, str]]:
        return [a for a in self.alarms.values() if a["state"] == "raised"]


class ControllerProcess:
    """One ``parkctl run --sim-clock`` process after another, on the same configuration and database."""

    def __init__(self, command: Sequence[str], config: Path, clock: ScaledClock, out_dir: Path) -> None:
        self.command, self.config, self.clock, self.out_dir = list(command), config, clock, out_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0
        self._logs: list[IO[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        spec = f"{self.clock.start.isoformat()}@{self.clock.anchor_unix_s!r}:{self.clock.speed!r}"
        self.spawned += 1
        out = (self.out_dir / f"controller-{self.spawned}.log").open("wb")
        self._logs.append(out)
        self.proc = subprocess.Popen([*self.command, "-v", "run", "--config", str(self.config), "--sim-clock", spec],
                                     stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        return self.proc

    def kill(self) -> None:
        """SIGKILL, right now (callable from inside a device's request handler)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def wait(self, timeout_s: float) -> int:
        proc = self.proc
        assert proc is not None
        try:
            return await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise DrillError(f"controller process {proc.pid} did not exit within {timeout_s:g} s") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Kill whatever still runs (a failed drill must not leave a controller behind)."""
        if self.alive():
            self.kill()
            assert self.proc is not None
            self.proc.wait()
        for f in self._logs:
            f.close()


def last_cycle_ts(db: Path) -> datetime | None:
    """The instant of the last cycle the controller committed (``history_cursor``), read-only."""
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        row = conn.execute("SELECT ts FROM history_cursor").fetchone()
    except sqlite3.OperationalError:  # schema not there yet
        return None
    finally:
        conn.close()
    return None if row is None else datetime.fromisoformat(row[0])


async def wait_for_cycle_after(db: Path, after: datetime, ctl: ControllerProcess, timeout_s: float) -> datetime:
    """The first committed cycle later than ``after`` (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ts = last_cycle_ts(db)
        if ts is not None and ts > after:
            return ts
        if not ctl.alive():
            raise DrillError(f"the controller exited ({ctl.proc.returncode if ctl.proc else None}) before cycling;"
                             f" see {ctl.out_dir}/controller-{ctl.spawned}.log")  # fmt: skip
        if time.monotonic() > deadline:
            raise DrillError(f"no controller cycle after {after.isoformat()} within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)


async def kill_between_cycles(db: Path, ctl: ControllerProcess, clock: ScaledClock, period: timedelta,
                              timeout_s: float) -> datetime:  # fmt: skip
    """SIGKILL in the middle of a control period whose cycle is committed: 30 % to 60 % of the way to the
    next cycle (the cycle's observers have long finished; the next cycle is not due)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = clock.now()
        boundary = ceil_to(now, period)
        if boundary > now:
            boundary -= period
        ts = last_cycle_ts(db)
        if ts is not None and ts >= boundary and 0.3 * period <= clock.now() - boundary <= 0.6 * period:
            ctl.kill()
            return clock.now()
        await asyncio.sleep(POLL_S)
    raise DrillError(f"the controller never sat between two cycles for {timeout_s:g} s")


def arm_signal_on_write(servers: Sequence[SunSpecServer], ctl: ControllerProcess, clock: ScaledClock,
                        sig: signal.Signals) -> list[datetime]:  # fmt: skip
    """Send ``sig`` to the controller from inside the first setpoint a device applies from now on (before
    its answer goes out); returns the list the signal's time will be put in."""
    fired: list[datetime] = []
    for server in servers:
        count = server._count_write  # the server's own write accounting: the device has applied the write

        def hook(key: tuple[int, tuple[int, ...]], arrived: float, slow: bool, sim_now: object,
                 _count: Callable[[tuple[int, tuple[int, ...]], float, bool, object], None] = count) -> None:
            _count(key, arrived, slow, sim_now)
            if not fired and ctl.alive():
                assert ctl.proc is not None
                os.kill(ctl.proc.pid, sig)  # a SIGKILLed controller never learns that this write landed
                fired.append(clock.now())

        server._count_write = hook  # type: ignore[method-assign]
    return fired


async def send_calls(scenario: Scenario, broker_host: str, broker_port: int, clock: ScaledClock) -> str | None:
    """The scenario's calls still to come, sent now as REAL_TIME calls; the acks, as one line."""
    from drivers.mqtt_url import parse_mqtt_url

    dr = scenario.demand_response
    if dr is None:
        return None
    endpoint = sender_endpoint(parse_mqtt_url(f"mqtt://{broker_host}:{broker_port}"))
    acks = []
    for call in dr.calls:
        now = clock.now()
        if call.end <= now:
            continue
        spec = call.model_copy(update={"notice": "REAL_TIME"}).spec(created=now)
        ack = await send_event(endpoint, scenario.site.name, encode_event(spec), call.id, ACK_TIMEOUT_S)
        if ack is None:
            raise DrillError(f"no acknowledgement for DR call {call.id} within {ACK_TIMEOUT_S:g} s")
        acks.append(f"{call.id}: {ack.status} opt-in {ack.opt_in} ({ack.reason})")
    return "; ".join(acks) or None


def dr_cap_kw(scenario: Scenario) -> tuple[float | None, list[tuple[datetime, datetime]]]:
    """The tightest import cap the scenario's calls ask for, and their windows."""
    dr = scenario.demand_response
    calls = [c for c in (dr.calls if dr else []) if c.type == "IMPORT_CAPACITY_LIMIT"]
    if not calls:
        return None, []
    return min(min(c.values_kw) for c in calls), [(c.start, c.end) for c in calls]


async def run_drill(opts: DrillOptions) -> DrillResult:
    started = time.perf_counter()
    base = load_scenario(opts.scenario)
    start, kill_at, end = (_local(base, x) for x in (opts.start, opts.kill_at, opts.end))
    if not start < kill_at < end:
        raise DrillError("need start < kill_at < end")
    scenario = drill_scenario(base, start, opts.history_days)
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    db = out / "controller.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    dr = scenario.demand_response
    t0 = time.perf_counter()
    if dr is not None and dr.history_days > 0:
        await seed_history(scenario, dr.history_days, db, dr.history_cycle_s)
    history_s = time.perf_counter() - t0
    cycle_s = scenario.control_cycle_s
    period = timedelta(seconds=cycle_s)
    clock = ScaledClock(start, time.time(), opts.speed)
    tasks: list[asyncio.Task[None]] = []
    with PrivateMosquitto() as mosquitto:
        async with running_park(scenario, clock, str(mosquitto.url), publish_s=cycle_s) as (park, endpoints, broker,
                                                                                             devices):  # fmt: skip
            config = controller_config_for(scenario, endpoints, broker, cycle_s, opts.strategy, db_path=str(db))
            config_path = write_config(config, out / "controller.yaml")
            meter = Meter(park, clock, timedelta(seconds=scenario.physics_step_s))
            tap = TelemetryTap(broker.host, broker.port, scenario.site.name)
            ctl = ControllerProcess(opts.command, config_path, clock, out)
            servers = list(endpoints.servers.values())
            tasks += [asyncio.create_task(meter.run(), name="meter"), asyncio.create_task(tap.run(), name="tap")]
            try:
                await asyncio.wait_for(tap.ready.wait(), opts.timeout_s)
                w0, s0 = time.time(), clock.now()
                ctl.spawn()
                first = await wait_for_cycle_after(db, s0, ctl, opts.timeout_s)
                first_cycle_s = clock.wall_at(first) - w0
                dr_ack = await send_calls(scenario, broker.host, broker.port, clock)
                await clock.sleep_until(kill_at)
                if opts.kill_mode == "on_write":
                    fired = arm_signal_on_write(servers, ctl, clock, signal.SIGKILL)
                    killed_rc = await ctl.wait(opts.timeout_s)
                    kill_ts = fired[0] if fired else clock.now()
                else:
                    kill_ts = await kill_between_cycles(db, ctl, clock, period, opts.timeout_s)
                    killed_rc = await ctl.wait(opts.timeout_s)
                if opts.restart_pause_s > 0:
                    await asyncio.sleep(opts.restart_pause_s)
                w1, s1 = time.time(), clock.now()
                ctl.spawn()
                again = await wait_for_cycle_after(db, max(s1, kill_ts), ctl, opts.timeout_s)
                restart_s = clock.wall_at(again) - w1
                await clock.sleep_until(end)
                # SIGTERM as a device applies a setpoint: a clean stop must not lose the cycle under way
                stopped = arm_signal_on_write(servers, ctl, clock, signal.SIGTERM)
                with contextlib.suppress(DrillError):  # no write for a while: stop it anyway
                    await ctl.wait(max(4 * cycle_s / opts.speed, 1.0))
                if not stopped and ctl.proc is not None:
                    ctl.proc.send_signal(signal.SIGTERM)
                final_rc = await ctl.wait(opts.timeout_s)
                for task in tasks:  # the meter and the tap run until cancelled: an end is a failure
                    if task.done():
                        raise DrillError(f"the drill's {task.get_name()} stopped: {task.exception()!r}")
            finally:
                ctl.close()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            park.advance_to(end)
            kpis = park.kpis()
            received = {dev: s.setpoints_received for dev, s in endpoints.servers.items() if s.setpoints_received}
            received.update({lid: st.commands_applied for lid, st in devices.stats.items() if st.commands_applied})
            final_violation = meter.violation_s()
    window = (kill_ts, again + timedelta(seconds=SETTLE_S))
    raised = tap.raised()
    counts = fault_report.DayCounts(setpoints_received=received, plans_made=len(tap.plans),
                                    alarms_raised=len(raised), crashes=1)  # fmt: skip
    bounds = (min((b.soc_min_pct for b in scenario.batteries), default=0.0),
              max((b.soc_max_pct for b in scenario.batteries), default=100.0))  # fmt: skip
    samples = [(start, 0.0), *meter.violations, (max(end, park.now), final_violation)]
    report = fault_report.build_report((), {}, {}, start, opts.strategy, kpis, bounds, db, counts, samples, [window])
    cap, events = dr_cap_kw(scenario)
    in_window = [(max(a, window[0]), min(b, window[1])) for a, b in events if max(a, window[0]) < min(b, window[1])]
    before = [(a, min(b, window[0])) for a, b in events if a < window[0]]
    after = [(max(a, window[1]), b) for a, b in events if window[1] < b]
    tol = scenario.grid.violation_tolerance_kw
    over_in, over_before, over_after = (meter.over_cap_s(cap + tol, w) if cap is not None else 0.0
                                        for w in (in_window, before, after))  # fmt: skip
    peak = max((p for t, p in meter.samples if any(a <= t < b for a, b in events)), default=0.0)
    result = DrillResult(
        options={**asdict(opts), "out_dir": str(opts.out_dir), "command": list(opts.command)},
        wall_s=time.perf_counter() - started, history_s=history_s, kill_ts=kill_ts.isoformat(),
        killed_returncode=killed_rc, restart_pause_s=opts.restart_pause_s, first_cycle_s=first_cycle_s,
        restart_to_first_cycle_s=restart_s, down_sim_s=(again - kill_ts).total_seconds(), final_returncode=final_rc,
        stopped_on_write=bool(stopped),
        kill_window=(window[0].isoformat(), window[1].isoformat()), dr_cap_kw=cap, over_cap_in_window_s=over_in,
        over_cap_before_kill_s=over_before, over_cap_after_window_s=over_after, peak_import_kw_in_event=peak,
        over_cap_episodes=meter.episodes(cap + tol, events) if cap is not None else [], dr_ack=dr_ack,
        telemetry_alarms=raised, telemetry_plans=len(tap.plans), lost=lost_records(report, raised, db, start),
        report=report,
    )  # fmt: skip
    (out / "kill_drill.json").write_text(json.dumps(asdict(result), indent=2, default=str) + "\n", encoding="utf-8")
    return result


def lost_records(report: dict[str, Any], raised: Sequence[dict[str, str]], db: Path, since: datetime) -> dict[str, Any]:
    """Per kind, what the park saw that the database lacks (empty lists and zeros: nothing lost)."""
    rec = report["records"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        stored = [(c, d, datetime.fromisoformat(r)) for c, d, r in conn.execute(
            "SELECT code, device, raised_ts FROM alarms")]  # fmt: skip
    finally:
        conn.close()

    def in_db(a: dict[str, str]) -> bool:  # the row is written just before the message (clock moves on)
        ts = datetime.fromisoformat(a["ts"])
        return any(c == a["code"] and d == a["device"] and ts - ALARM_SLACK <= r <= ts for c, d, r in stored)

    alarms = [a for a in raised if datetime.fromisoformat(a["ts"]) >= since and not in_db(a)]
    return {"setpoints": dict(rec["setpoints"]["lost_by_device"]), "alarms": alarms, "plans": rec["plans"]["lost"],
            "dr_quarter_hours": rec["dr_intervals"]["lost"]}  # fmt: skip


def dr_slots(db: Path, event_id: str) -> list[str]:
    """The quarter-hours of ``event_id`` in ``dr_intervals`` (site-local ISO starts)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT ts_start FROM dr_intervals WHERE event_id = ? ORDER BY start_unix",
                                           (event_id,))]  # fmt: skip
    finally:
        conn.close()
