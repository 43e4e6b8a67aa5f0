"""The command line: bad input gives one line that names the problem, and exit status 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from parkctl.cli import main, parse_speed


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parkctl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_unknown_scenario_names_it_and_lists_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--scenario", "no-such-park", "--out", "/tmp/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no-such-park" in err and "chenzhou-summer-weekday" in err


def test_malformed_scenario_file_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = Path("sim/scenarios/chenzhou-summer-weekday.yaml").read_text()
    bad.write_text(text.replace("import_cap_kw: 6300", "import_cap_kw: lots"))
    assert main(["sim", "--scenario", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "grid.import_cap_kw" in err


def test_broken_yaml_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nsite: [unclosed\n")
    assert main(["sim", "--scenario", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def test_port_in_use_is_one_line_naming_the_port(mosquitto_broker: object) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        url = str(mosquitto_broker.url)  # type: ignore[attr-defined]
        proc = run_cli("sim", "serve", "--modbus-port", str(port), "--mqtt-url", url)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


def test_speed_parsing() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60x") == 60.0
    with pytest.raises(Exception, match="speed"):
        parse_speed("fast-ish")
