"""The deploy/ files are valid and agree with each other and with the code they configure."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import socket
import subprocess
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from controller.check import validate
from controller.config import load_config
from controller.metrics import ControllerMetrics
from sim.broker import BrokerUrl, free_port
from sim.day import controller_config_for
from sim.modbus_server import METER_ID, Endpoint, ParkEndpoints
from sim.scenario import load_scenario
from tests.tls_broker import make_certs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "parkctl.service"


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values of a systemd unit (keys may repeat; comments and blank lines skipped)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"entry outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value)
    assert m, f"unexpected time span {value!r}"
    return float(m[1]) * {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0}[m[2]]


# -- controller configurations -------------------------------------------------------------------------


def test_example_configs_load_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKCTL_MQTT_PASSWORD", "not-a-real-secret")
    for name in ("sim-park.yaml", "real-park.example.yaml"):
        config = load_config(DEPLOY / "config" / name)
        assert validate(DEPLOY / "config" / name) == config
        assert config.strategy == "rules" and config.cycle.period_s == 1.0
    real = load_config(DEPLOY / "config" / "real-park.example.yaml")
    assert real.mqtt is not None and real.mqtt.url.startswith("mqtts://") and real.mqtt.tls is not None
    assert real.mqtt.password_env == "PARKCTL_MQTT_PASSWORD"  # the secret is not in the file
    assert {d.kind for d in real.modbus} == {"pv", "storage", "meter"}


def test_sim_park_config_is_what_sim_serve_offers() -> None:
    """``parkctl sim serve --modbus-port 15020``: consecutive ports in scenario order, meter last."""
    sc = load_scenario("chenzhou-summer-weekday")
    ids = [p.id for p in sc.pv] + [b.id for b in sc.batteries] + [METER_ID]
    kinds = ["pv"] * len(sc.pv) + ["storage"] * len(sc.batteries) + ["meter"]
    endpoints = ParkEndpoints(
        {i: Endpoint("127.0.0.1", 15020 + n, 1, k) for n, (i, k) in enumerate(zip(ids, kinds, strict=True))}, {}
    )
    expected = controller_config_for(sc, endpoints, BrokerUrl("127.0.0.1", 1883), 1.0, "rules")
    config = load_config(DEPLOY / "config" / "sim-park.yaml")
    # storage and metrics differ on purpose: the simulator keeps its db in memory and serves no metrics
    for part in ("site", "grid", "batteries", "cycle", "strategy", "modbus", "mqtt", "loads", "planner"):
        assert getattr(config, part) == getattr(expected, part), part


def metrics_target() -> str:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "parkctl")
    targets = job["static_configs"][0]["targets"]
    assert len(targets) == 1
    return str(targets[0])


def test_example_configs_serve_metrics_where_prometheus_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKCTL_MQTT_PASSWORD", "not-a-real-secret")
    for name in ("sim-park.yaml", "real-park.example.yaml"):
        m = load_config(DEPLOY / "config" / name).metrics
        assert m.enabled and f"{m.host}:{m.port}" == metrics_target(), name


# -- systemd ---------------------------------------------------------------------------------------------


def test_systemd_unit_has_what_the_service_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARKCTL_MQTT_PASSWORD", "not-a-real-secret")
    unit = unit_entries(UNIT.read_text(encoding="utf-8"))
    svc = unit["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify" and one["Restart"] == "always"
    assert "parkctl run --config /etc/parkctl/park.yaml" in one["ExecStart"]
    # the watchdog must give a 1 s cycle several chances (pings go out every WatchdogSec / 2)
    sim_period = load_config(DEPLOY / "config" / "sim-park.yaml").cycle.period_s
    assert seconds(one["WatchdogSec"]) >= 5 * sim_period
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "root", "0")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "StateDirectory": "parkctl",
                       "ProtectHome": "yes", "PrivateTmp": "yes"}.items():  # fmt: skip
        assert one.get(key) == value, key
    assert "/var/lib/parkctl" in one["ReadWritePaths"].split()
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}  # AF_UNIX: sd_notify
    real = load_config(DEPLOY / "config" / "real-park.example.yaml")
    assert Path(real.storage.path).parent == Path("/var/lib", one["StateDirectory"])  # the db lands in the state dir
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    sysusers = (DEPLOY / "parkctl.sysusers.conf").read_text(encoding="utf-8").split()
    assert sysusers[:2] == ["u", one["User"]]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd's own parser; ExecStart points at an existing program, since /opt/parkctl is not here."""
    true = shutil.which("true")
    assert true is not None
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={true}", UNIT.read_text(encoding="utf-8"), flags=re.M)
    (tmp_path / "parkctl.service").write_text(text, encoding="utf-8")
    run = subprocess.run(["systemd-analyze", "verify", "parkctl.service"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    complaints = [ln for ln in (run.stdout + run.stderr).splitlines() if "parkctl.service" in ln]
    assert run.returncode == 0 and not complaints, run.stdout + run.stderr


# -- container -------------------------------------------------------------------------------------------


def test_containerfile() -> None:
    text = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    instructions = [ln.split(None, 1) for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert f"{metrics_target()}/metrics" in healthcheck
    # every package the project installs is copied into the build
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {arg.split()[0] for op, arg in instructions if op == "COPY"}
    assert {p.rstrip("*") for p in include} <= copied


# -- Prometheus ------------------------------------------------------------------------------------------


def test_prometheus_files() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs) == {"parkctl", "node", "prometheus"}
    assert prom["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"ParkctlDown", "ParkctlCycleStalled", "ParkctlCycleOverruns", "ParkctlDeviceErrorsRising",
            "ParkctlMeterStale", "ParkctlPlanStale"} <= set(alerts)  # fmt: skip
    for name, rule in alerts.items():
        assert rule["expr"] and rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
    assert 'job="parkctl"' in alerts["ParkctlDown"]["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_config_and_alert_tests() -> None:
    folder = DEPLOY / "prometheus"
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        run = subprocess.run(["promtool", *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


# -- Mosquitto -------------------------------------------------------------------------------------------


def conf_entries(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out.setdefault(key, []).append(value.strip())
    return out


def test_mosquitto_conf_settings() -> None:
    conf = conf_entries((DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8"))
    assert conf["set_tcp_nodelay"] == ["true"]
    assert conf["persistence"] == ["true"] and conf["persistence_location"]
    assert conf["listener"] and conf["allow_anonymous"] == ["false"]
    assert conf["acl_file"] and conf["password_file"]
    assert (DEPLOY / "mosquitto" / "acl.example").is_file()


def test_mosquitto_starts_with_the_example(tmp_path: Path) -> None:
    """Mosquitto itself parses the example (listener and file paths moved into a temporary directory)."""
    program = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if program is None:
        pytest.skip("mosquitto not installed")
    port = free_port()
    certs = make_certs(tmp_path / "certs")
    moves = {
        "listener": f"{port} 127.0.0.1",
        "persistence_location": f"{tmp_path}/",
        "password_file": str(tmp_path / "passwd"),
        "acl_file": str(tmp_path / "acl"),
        "log_dest": "stderr",
        "cafile": str(certs.ca),
        "certfile": str(certs.server_cert),
        "keyfile": str(certs.server_key),
    }
    lines = []
    for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8").splitlines():
        key = line.split(" ", 1)[0]
        lines.append(f"{key} {moves[key]}" if key in moves else line)
    lines.append(f"user {getpass.getuser()}")
    (tmp_path / "passwd").write_text("")
    shutil.copy(DEPLOY / "mosquitto" / "acl.example", tmp_path / "acl")
    (tmp_path / "m.conf").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([program, "-c", str(tmp_path / "m.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while True:
            assert proc.poll() is None, f"mosquitto exited: {proc.communicate()[0]}"
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.02)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=5)[0]
    assert "Error" not in out, out


def exported_metric_names() -> set[str]:
    """Every series name the controller can expose: its metrics, demand response and alarms."""
    from controller.alarms import AlarmMonitor
    from controller.store import Store, StoreSettings
    from dr.config import DrConfig, ProgrammeConfig
    from dr.intake_metrics import DrIntakeCollector
    from dr.manager import DrManager
    from dr.metrics import DrMetrics
    from parkctl.clock import SimClock

    registry = CollectorRegistry()
    ts = datetime(2026, 7, 15, 3, tzinfo=UTC)
    ControllerMetrics(registry, "zixing-pilot")
    DrMetrics(registry, "zixing-pilot")
    with Store.open(":memory:", SimClock(ts), StoreSettings(checkpoint_s=None)) as store:
        config = DrConfig(programmes={"p": ProgrammeConfig(price_cny_per_kwh=1.0, penalty_cny_per_kwh=2.0)})
        DrIntakeCollector("zixing-pilot", DrManager(config, store), SimClock(ts)).register(registry)
        AlarmMonitor(store, registry, "zixing-pilot")
        names: set[str] = set()
        for family in registry.collect():
            names.add(family.name)
            names.update(family.name + suffix for suffix in ("_total", "_bucket", "_count", "_sum", "_created"))
    return names


def test_alerts_and_dashboard_use_metrics_the_controller_exports() -> None:
    """Every parkctl_* series an alert or a dashboard panel reads is one the controller really exposes."""
    exposed = exported_metric_names()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    used = {name for g in rules["groups"] for r in g["rules"] for name in re.findall(r"parkctl_[a-z_]+", r["expr"])}
    assert used and used <= exposed, sorted(used - exposed)
    dashboard = json.loads((DEPLOY / "grafana" / "parkctl-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    in_panels = {name for e in exprs for name in re.findall(r"parkctl_[a-z_]+", e)}
    assert in_panels and in_panels <= exposed, sorted(in_panels - exposed)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
