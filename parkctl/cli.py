"""``parkctl``: the one command line of the project.

Every subcommand turns a :class:`ParkError` into one line on stderr and exit status 2, so an operator
or a script sees what is wrong without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.check import add_check_config_parser, cmd_check_config
from dr.cli import add_dr_parser, cmd_dr
from parkctl.argtypes import bounded_float
from parkctl.errors import ParkError
from sim.replay_cli import add_replay_parser, cmd_replay
from sim.sweep_cli import add_sweep_parser, cmd_sweep


def parse_speed(text: str) -> float | None:
    """``max`` (as fast as possible), ``realtime`` (1) or a factor such as ``60`` / ``60x``."""
    t = text.strip().lower()
    if t in {"max", "inf", "fast"}:
        return None
    if t in {"realtime", "real", "1x"}:
        return 1.0
    try:
        value = float(t.removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be 'max', 'realtime' or a factor, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be positive")
    return value




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parkctl", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run the simulated park (with the controller, or serve it alone)")
    sim.add_argument("action", nargs="?", choices=["run", "serve"], default="run",
                     help="run: park + controller for --hours and write results; serve: park only, real time")
    sim.add_argument("--scenario", default="chenzhou-summer-weekday", help="shipped name or a YAML path")
    sim.add_argument("--hours", type=bounded_float("hours", 0, 24 * 14), default=24.0)
    sim.add_argument("--speed", type=parse_speed, default=None,
                     help="max (default for run), realtime (default for serve), or a factor such as 60")
    sim.add_argument("--strategy", choices=["rules", "mpc"], default="rules",
                     help="decision layer: rule-based self-consumption, or rolling-horizon optimisation")
    sim.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on 127.0.0.1:PORT")
    sim.add_argument("--cycle", type=float, default=None, help="control cycle in s (default: scenario's)")
    sim.add_argument("--mqtt-url", default=None, help="use this broker instead of a private Mosquitto")
    sim.add_argument("--out", type=Path, default=Path("out/sim"), help="where kpis.json etc. go")
    sim.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    sim.add_argument("--modbus-port", type=int, default=0, metavar="BASE",
                     help="serve: Modbus devices on consecutive ports from BASE (default: free ports)")
    add_check_config_parser(sub)
    add_replay_parser(sub)
    add_dr_parser(sub)
    add_sweep_parser(sub)

    opt = sub.add_parser("optimize", help="solve one dispatch plan for a scenario and write plan.json/plan.csv")
    opt.add_argument("--scenario", default="chenzhou-summer-weekday", help="shipped name or a YAML path")
    opt.add_argument("--step", type=_step_seconds, default=900, help="15min (default) or 5min")
    opt.add_argument("--horizon", type=bounded_float("horizon", 0, 48, "h", suffix="h"), default=24.0,
                     help="e.g. 24h (default), 48h")
    opt.add_argument("--oracle", action="store_true", help="plan on the realised day (perfect foresight)")
    opt.add_argument("--out", type=Path, default=Path("out/plan"))

    run = sub.add_parser("run", help="run the controller against the devices a configuration names")
    run.add_argument("--config", type=Path, required=True, help="controller configuration (YAML)")
    run.add_argument("--sim-clock", type=_sim_clock, default=None, metavar="START@ANCHOR_UNIX_S:SPEED",
                     help="only for drills against a simulated park: run on a clock that shows START at Unix time "
                          "ANCHOR_UNIX_S and goes SPEED times faster than real time (the park shares it); "
                          "e.g. 2026-07-15T15:45:00+08:00@1763952000.0:40")
    return parser


def _sim_clock(text: str) -> object:
    from controller.run import parse_sim_clock  # late: the controller's imports are heavy

    try:
        return parse_sim_clock(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _step_seconds(text: str) -> int:
    table = {"5min": 300, "15min": 900, "300": 300, "900": 900}
    if text not in table:
        raise argparse.ArgumentTypeError("step must be 5min or 15min")
    return table[text]




def _cmd_optimize(args: argparse.Namespace) -> int:
    from optimizer.command import optimize_scenario, write_plan
    from sim.forecast import SimForecaster
    from sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    start, step = scenario.local_start, args.step
    n = int(args.horizon * 3600 // step)
    if args.oracle:  # realised: a forecast issued at the end of the horizon has no lead left
        forecast = SimForecaster(scenario.model_copy(update={"forecast_error": scenario.forecast_error.model_copy(
            update={"pv_sigma_now": 0.0, "pv_sigma_day_ahead": 0.0, "load_sigma_now": 0.0,
                    "load_sigma_day_ahead": 0.0})})).forecast(start, start, n, step)
    else:  # the day-ahead view: issued at the start of the horizon
        forecast = SimForecaster(scenario).forecast(start, start, n, step)
    base = forecast.load_kw - sum(forecast.interruptible_kw.values())
    plan = optimize_scenario(scenario, forecast.pv_kw, base, step, start, oracle=args.oracle)
    json_path, csv_path = write_plan(plan, args.out)
    o = plan.objective
    print(f"plan {plan.status}{' (fallback)' if plan.fallback else ''}: {n} steps of {step // 60} min from "
          f"{start:%Y-%m-%d %H:%M}; green {o.green_kwh:.0f} of {o.pv_available_kwh:.0f} kWh PV, "
          f"cost {o.cost_cny:.0f} CNY; built {plan.timings.build_s:.2f} s, solved {plan.timings.solve_s:.2f} s")
    print(f"  {plan.message}" if plan.message else "", end="\n" if plan.message else "")
    print(f"  wrote {json_path} and {csv_path}")
    return 0


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pymodbus logs every refused connection and timeout itself; our drivers count and report them.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL)


def _cmd_sim(args: argparse.Namespace) -> int:
    from sim.day import SimOptions, serve_park, simulate_day
    from sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = scenario.model_copy(update={"seed": args.seed})
    if args.action == "serve":
        asyncio.run(serve_park(scenario, mqtt_url=args.mqtt_url, speed=args.speed or 1.0,
                               modbus_base_port=args.modbus_port))
        return 0
    options = SimOptions(
        hours=args.hours, speed=args.speed, strategy=args.strategy, mqtt_url=args.mqtt_url,
        cycle_s=args.cycle or scenario.control_cycle_s, out_dir=args.out, metrics_port=args.metrics_port,
    )
    result = asyncio.run(simulate_day(scenario, options))
    print(result.summary())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.run import run_controller

    asyncio.run(run_controller(args.config, sim_clock=args.sim_clock))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {"sim": _cmd_sim, "check-config": cmd_check_config, "run": _cmd_run, "optimize": _cmd_optimize,
                "replay": cmd_replay, "sweep": cmd_sweep, "dr": cmd_dr}
    try:
        return handlers[args.command](args)
    except ParkError as exc:
        print(f"parkctl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("parkctl: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
