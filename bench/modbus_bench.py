"""What the SunSpec Modbus path costs: per reading, per server read, and for a simulated 2 h.

For the working tree and, for comparison, a git revision (``--baseline``, HEAD by default), each in
its own process, it measures:

* ``read_pv`` / ``read_battery`` / ``read_meter`` per call, client and simulated server in one event
  loop over loopback TCP, as in ``parkctl sim`` (the park is at 11:00 and moves 15 s before every
  call, outside the timed part, so each read sees a new state);
* the simulated server's own work per read: the pymodbus ``action`` hook of the device, called
  directly with the (address, count) requests the reading above makes;
* ``simulate_day`` of the summer scenario for ``--hours`` (the production controller, Modbus and MQTT
  over real sockets): wall and CPU seconds (the CPU figure is steadier on a busy machine; the
  Mosquitto broker is not in it), runs of both revisions interleaved, and whether every run wrote
  identical results.

The baseline process runs the revision's ``drivers/sunspec/{models,codec}.py``,
``drivers/sunspec_devices.py`` and ``sim/{sunspec_images,modbus_server}.py`` (``git show REV:path``,
read only; files it lacks are skipped), everything else from the working tree.

    python bench/modbus_bench.py [--baseline REV | --no-baseline] [--hours 2] [--runs 3] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "chenzhou-summer-weekday"
SWAPPED = [  # module, path; in import order
    ("drivers.sunspec.models", "drivers/sunspec/models.py"),
    ("drivers.sunspec.codec", "drivers/sunspec/codec.py"),
    ("sim.sunspec_images", "sim/sunspec_images.py"),
    ("drivers.sunspec_devices", "drivers/sunspec_devices.py"),
    ("sim.modbus_server", "sim/modbus_server.py"),
]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout


def install_revision(rev: str) -> list[str]:
    """Import the swapped modules from ``rev`` instead of the working tree; the paths taken from it."""
    taken = []
    for name, path in SWAPPED:
        source = _git("show", f"{rev}:{path}")
        if source is None:
            continue
        module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None))
        module.__file__ = f"{rev}:{path}"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        taken.append(path)
    return taken


class _Clock:
    """The park's clock, moved by hand."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t


async def per_call(calls: int) -> dict[str, float]:
    """Median microseconds per reading (client + server over loopback) and per server hook call."""
    from drivers.modbus_client import ModbusDeviceClient
    from drivers.sunspec_devices import SunSpecMeter, SunSpecPvInverter, SunSpecStorage
    from sim.modbus_server import start_park_servers
    from sim.park import Park
    from sim.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    clock = _Clock(scenario.local_start + timedelta(hours=11))
    park = Park(scenario, clock)  # type: ignore[arg-type]
    park.sync()
    endpoints = await start_park_servers(park, scenario)
    pv_id, bess_id, meter_id = scenario.pv[0].id, scenario.batteries[0].id, "meter"
    out: dict[str, float] = {}
    try:
        clients = {i: ModbusDeviceClient(endpoints[i].host, endpoints[i].port, timeout_s=2.0)
                   for i in (pv_id, bess_id, meter_id)}
        drivers = {"pv": (SunSpecPvInverter(pv_id, clients[pv_id]), "read_pv", pv_id),
                   "storage": (SunSpecStorage(bess_id, clients[bess_id]), "read_battery", bess_id),
                   "meter": (SunSpecMeter(meter_id, clients[meter_id], rated_kw=scenario.grid.import_cap_kw),
                             "read_meter", meter_id)}
        for kind, (driver, method, dev_id) in drivers.items():
            read = getattr(driver, method)
            await read()  # discovery and nameplate, not timed
            requests: list[tuple[int, int]] = []
            client = clients[dev_id]
            plain = client.read_holding_registers

            async def logged(address: int, count: int, plain: Any = plain, requests: Any = requests) -> Any:
                requests.append((address, count))
                return await plain(address, count)

            client.read_holding_registers = logged  # type: ignore[method-assign]
            await read()
            client.read_holding_registers = plain  # type: ignore[method-assign]
            spent = []
            for _ in range(calls):
                clock.t += timedelta(seconds=15)
                park.sync()
                t0 = time.perf_counter()
                await read()
                spent.append(time.perf_counter() - t0)
            out[f"{method} µs/call"] = statistics.median(spent) * 1e6
            device = endpoints.servers[dev_id].device
            registers = [int(v) for run in device.simdata() for v in run.values]  # type: ignore[union-attr]
            spent = []
            for _ in range(calls):
                clock.t += timedelta(seconds=15)
                park.sync()
                t0 = time.perf_counter()
                for address, count in requests:
                    if await device.action(3, 40000, address, count, registers, None) is not None:
                        raise RuntimeError(f"server hook of {dev_id} refused a read")
                spent.append(time.perf_counter() - t0)
            out[f"server hook, {kind} µs/reading ({len(requests)} req)"] = statistics.median(spent) * 1e6
        for client in clients.values():
            client.close()
    finally:
        await endpoints.stop()
    return out


def sim_run(hours: float) -> dict[str, Any]:
    """One ``simulate_day``: wall and CPU seconds of this process, digest of what it wrote."""
    from sim.day import SimOptions, simulate_day
    from sim.scenario import load_scenario

    scenario = load_scenario(SCENARIO)
    with tempfile.TemporaryDirectory() as tmp:
        options = SimOptions(hours=hours, cycle_s=scenario.control_cycle_s, out_dir=Path(tmp))
        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(simulate_day(scenario, options))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        digest = hashlib.sha256()
        for name in ("kpis.json", "timeseries.csv"):
            digest.update((Path(tmp) / name).read_bytes())
    return {"wall": wall, "cpu": cpu, "digest": digest.hexdigest()[:16]}


def worker(args: argparse.Namespace) -> None:
    taken = install_revision(args.rev) if args.rev else []
    result: dict[str, Any] = {"taken": taken}
    if args.worker == "calls":
        result["per_call"] = asyncio.run(per_call(args.calls))
    else:
        result["sim"] = sim_run(args.hours)
    print(json.dumps(result))


def environment() -> str:
    head = (_git("rev-parse", "--short", "HEAD") or "?").strip()
    dirty = _git("status", "--porcelain", "--", *(p for _, p in SWAPPED))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"Python {platform.python_version()} ({platform.python_implementation()}), pymodbus {version('pymodbus')}, "
            f"pysunspec2 {version('pysunspec2')}, {platform.platform()}, {os.cpu_count()} cores "
            f"(load {load}), git HEAD {head}{' + changes to the swapped files' if dirty else ''}")


def _run_worker(mode: str, rev: str | None, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", mode, "--hours", str(args.hours), "--calls", str(args.calls),
           *(["--rev", rev] if rev else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{rev or 'working tree'} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _row(name: str, values: list[float], fmt: str) -> str:
    line = f"{name:46}" + "".join(f"{v:>20{fmt}}" for v in values)
    return line + (f"   {values[0] / values[-1]:5.2f}x" if len(values) > 1 and values[-1] else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="HEAD", help="git revision to compare with (default HEAD)")
    ap.add_argument("--no-baseline", action="store_true", help="measure the working tree only")
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours per simulate_day run")
    ap.add_argument("--runs", type=int, default=3, help="simulate_day runs per revision, interleaved (0: skip)")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per reading")
    ap.add_argument("--worker", choices=["calls", "sim"], help=argparse.SUPPRESS)
    ap.add_argument("--rev", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    env = dict(os.environ)
    if shutil.which("mosquitto") is None and Path("/usr/sbin/mosquitto").exists():
        env["PATH"] = f"/usr/sbin{os.pathsep}{env.get('PATH', '')}"  # Debian puts the broker there
    print(environment())
    print(f"scenario {SCENARIO}; per-call figures are medians of {args.calls} calls; simulate_day "
          f"{args.hours:g} h x {args.runs} runs per revision (interleaved), production controller, 15 s cycle")
    revs: list[str | None] = []
    if not args.no_baseline:
        if _git("rev-parse", "--verify", "--quiet", f"{args.baseline}^{{commit}}") is None:
            print(f"baseline {args.baseline}: not available (no git or no such revision); skipped")
        else:
            revs.append(args.baseline)
    revs.append(None)
    calls = [_run_worker("calls", rev, args, env) for rev in revs]
    labels = [f"{rev} ({len(c['taken'])} files)" if rev else "working tree" for rev, c in zip(revs, calls, strict=True)]
    print(f"\n{'':46}" + "".join(f"{label:>20}" for label in labels) + ("   ratio" if len(revs) > 1 else ""))
    for row in calls[-1]["per_call"]:
        print(_row(row, [c["per_call"][row] for c in calls], ".0f"))
    if not args.runs:
        return
    sims: list[list[dict[str, Any]]] = [[] for _ in revs]
    for _ in range(args.runs):
        for i, rev in enumerate(revs):
            sims[i].append(_run_worker("sim", rev, args, env)["sim"])
    print(_row(f"simulate_day {args.hours:g} h, s wall (median)", [statistics.median(r["wall"] for r in s)
                                                                    for s in sims], ".2f"))
    print(_row(f"simulate_day {args.hours:g} h, s CPU (median)", [statistics.median(r["cpu"] for r in s)
                                                                   for s in sims], ".2f"))
    for label, s in zip(labels, sims, strict=True):
        print(f"  {label}: wall " + ", ".join(f"{r['wall']:.2f}" for r in s) + "; CPU "
              + ", ".join(f"{r['cpu']:.2f}" for r in s))
    digests = {r["digest"] for s in sims for r in s}
    same = "identical" if len(digests) == 1 else "DIFFERENT"
    print(f"  kpis.json + timeseries.csv, all runs: {same} ({', '.join(sorted(digests))})")


if __name__ == "__main__":
    main()
