"""Which MQTT broker the simulator talks to: the one named by ``--mqtt-url``, or a private Mosquitto.

A private broker runs on a free loopback port with its config, persistence file and log in a temporary
directory, so parallel runs and tests never share state with a system Mosquitto. It can be stopped and
started again on the same port (broker-restart tests, fault injection); persistence is on, so sessions,
queued QoS-1 messages and retained messages survive a clean restart as they would on a real site.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

from drivers.mqtt_url import BrokerUrl, parse_mqtt_url
from parkctl.errors import BrokerUnavailable

__all__ = ["BrokerUrl", "PrivateMosquitto", "free_port", "parse_mqtt_url", "select_broker"]

INSTALL_HINT = "install it (apt-get install mosquitto) or pass --mqtt-url mqtt://HOST:PORT"
# MQTT 3.1.1 CONNECT (clean session, keepalive 5 s, empty client id), its CONNACK, and DISCONNECT
_CONNECT = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x05\x00\x00"
_CONNACK_OK = b"\x20\x02\x00\x00"
_DISCONNECT = b"\xe0\x00"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it; a tiny race remains, acceptable for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PrivateMosquitto:
    """A Mosquitto of our own on ``127.0.0.1:port``; sync and async context manager."""

    host = "127.0.0.1"

    def __init__(self, program: str = "mosquitto", *, port: int | None = None, start_timeout_s: float = 5.0) -> None:
        found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin")
        if found is None:
            raise BrokerUnavailable(f"MQTT broker program {program!r} not found: {INSTALL_HINT}")
        self._program = found
        self.port = port or free_port(self.host)
        self._timeout_s = start_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> BrokerUrl:
        return BrokerUrl(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or start again, same port and persistence file) and wait until it accepts connections."""
        if self.running:
            return
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="parkctl-mosquitto-")
        work = Path(self._tmp.name)
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # run as root, mosquitto would switch to user "mosquitto" and could not write our temp dir
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "persistence true\n"
            f"persistence_location {work}/\n"
            "set_tcp_nodelay true\n"  # else Nagle + delayed ACK add ~40 ms per forwarded packet
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        log = (work / "mosquitto.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [self._program, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + self._timeout_s
        while True:
            if self._proc.poll() is not None:
                raise BrokerUnavailable(
                    f"mosquitto exited at start (code {self._proc.returncode}): {self._last_log_line()}"
                )
            if self._answers_mqtt():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(
                    f"mosquitto did not accept connections on {self.host}:{self.port} "
                    f"within {self._timeout_s:g} s: {self._last_log_line()}"
                )
            time.sleep(0.005)

    def _answers_mqtt(self) -> bool:
        """A full CONNECT/CONNACK, not just a TCP accept: something else may hold the port."""
        try:
            with socket.create_connection((self.host, self.port), 0.5) as s:
                s.sendall(_CONNECT)
                ok = s.recv(4) == _CONNACK_OK
                s.sendall(_DISCONNECT)
                return ok
        except OSError:
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate (Mosquitto saves its persistence file), wait, kill if it will not go."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the working directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    def _last_log_line(self) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "mosquitto.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else "(no log output)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)


@contextlib.asynccontextmanager
async def select_broker(mqtt_url: str | None, *, program: str = "mosquitto") -> AsyncIterator[BrokerUrl]:
    """The broker named by ``mqtt_url``; without one, a private Mosquitto for the duration of the block."""
    if mqtt_url:
        yield parse_mqtt_url(mqtt_url)
        return
    async with PrivateMosquitto(program) as broker:
        yield broker.url
