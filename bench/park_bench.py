"""How long the simulated park takes to integrate a day (target: < 3 s for the summer scenario at 1 s).

Two runs: the physics alone in one ``advance_to`` call, and a controller-like run that every 15 s reads
every device state, sets both batteries (self-consumption with a charge from PV surplus), caps PV when
the park would export, and sheds/restores loads in the evening peak. ``--profile`` prints a cProfile.

    python bench/park_bench.py [--scenario NAME] [--hours 24] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import timedelta

from parkctl.clock import SimClock
from sim.park import Park
from sim.scenario import Scenario, load_scenario


def physics_only(scenario: Scenario, hours: float) -> Park:
    park = Park(scenario, SimClock(scenario.local_start))
    park.advance_to(scenario.local_start + timedelta(hours=hours))
    return park


def controlled(scenario: Scenario, hours: float, cycle_s: float = 15.0) -> Park:
    park = Park(scenario, SimClock(scenario.local_start))
    t, end = scenario.local_start, scenario.local_start + timedelta(hours=hours)
    shares = {b.id: b.p_discharge_max_kw for b in scenario.batteries}
    total = sum(shares.values()) or 1.0
    while t < end:
        t += timedelta(seconds=cycle_s)
        park.advance_to(t)
        pv = sum(park.pv_state(i).p_kw for i in park.pv_ids)
        bats = {i: park.battery_state(i) for i in park.battery_ids}
        meter = park.meter_state()
        for i in park.load_ids:  # read like a controller would, result unused
            park.load_state(i)
        net = meter.p_kw + sum(b.p_kw for b in bats.values())  # grid power with the batteries idle
        for bid in park.battery_ids:
            park.set_battery_power(bid, net * shares[bid] / total)
        for pid in park.pv_ids:
            park.set_pv_limit(pid, 80.0 if net < -pv * 0.2 else None, revert_s=60.0)
        if t.hour == 20 and t.minute == 0 and t.second < cycle_s:
            for ld in park.load_ids:
                park.request_shed(ld)
        if t.hour == 20 and t.minute == 40 and t.second < cycle_s:
            for ld in park.load_ids:
                park.request_restore(ld)
    return park


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="chenzhou-summer-weekday")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    devices = f"{len(sc.pv)} PV, {len(sc.batteries)} batteries, {len(sc.interruptible_loads)} loads"
    print(f"scenario {sc.name}: {devices}, {args.hours} h at {sc.physics_step_s} s steps")
    for label, fn in (("physics only, one advance_to", physics_only),
                      ("controller-like, 15 s cycle, all states read", controlled)):  # fmt: skip
        prof = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        park = fn(sc, args.hours)
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
        k = park.kpis()
        soc = f"SoC {k['soc_min_pct']:.1f}..{k['soc_max_pct']:.1f} %"
        err = f"balance error {k['energy_balance_error_kwh']:.2e} kWh"
        print(f"  {label}: {wall:.2f} s wall ({err}, {soc}, import {k['grid_import_kwh']:.0f} kWh)")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
