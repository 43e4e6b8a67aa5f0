"""Test helpers: a throw-away CA and certificates (openssl CLI), a Mosquitto password file
(``mosquitto_passwd``), and a private Mosquitto with a TLS listener, password file and ACL.

Kept in tests/, not in the package: production certificates come from the site's own PKI.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
ACL_EXAMPLE = ROOT / "deploy" / "mosquitto" / "acl.example"


def tool(name: str) -> str:
    """Path of a command-line tool, or skip the test when it is not installed."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if found is None:
        pytest.skip(f"{name} not installed")
    return found


@dataclass(frozen=True)
class Certs:
    ca: Path  # CA certificate (trust anchor for clients and broker)
    server_cert: Path  # for localhost and 127.0.0.1
    server_key: Path
    client_cert: Path  # signed by the same CA, for mutual TLS
    client_key: Path
    other_ca: Path  # an unrelated CA: a client trusting only it must refuse the broker


def _openssl(*args: str | Path) -> None:
    subprocess.run([tool("openssl"), *map(str, args)], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN=parkctl test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return crt, key


def _leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    crt, key, csr, extfile = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    extfile.write_text(f"basicConstraints=CA:FALSE\n{ext}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", csr, "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", crt,
             "-days", "2", "-extfile", extfile)  # fmt: skip
    return crt, key


def make_certs(d: Path) -> Certs:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate and a foreign CA."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    server = _leaf(d, "localhost", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = _leaf(d, "parkctl", ca, "extendedKeyUsage=clientAuth")
    other = _ca(d, "other-ca")
    return Certs(ca[0], server[0], server[1], client[0], client[1], other[0])


def make_passwd(path: Path, users: Mapping[str, str]) -> Path:
    """A Mosquitto password file (hashed by ``mosquitto_passwd -b``)."""
    path.write_text("")
    for user, password in users.items():
        subprocess.run([tool("mosquitto_passwd"), "-b", str(path), user, password], check=True, capture_output=True)
    return path


class TlsMosquitto:
    """Mosquitto with only a TLS listener on a free loopback port, logins and an ACL."""

    host = "127.0.0.1"

    def __init__(self, work: Path, certs: Certs, passwd: Path, acl: Path, *, require_certificate: bool = False):
        self.work, self.certs, self.port = work, certs, free_port()
        self.conf = work / "mosquitto.conf"
        self.log = work / "mosquitto.log"
        self.conf.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} {self.host}\n"
            f"cafile {certs.ca}\ncertfile {certs.server_cert}\nkeyfile {certs.server_key}\n"
            f"require_certificate {'true' if require_certificate else 'false'}\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\n"
            f"user {getpass.getuser()}\n"
            "persistence false\nset_tcp_nodelay true\n"
            f"log_dest file {self.log}\nlog_type all\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 5.0) -> None:
        self._proc = subprocess.Popen([tool("mosquitto"), "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:  # the listener opens once the configuration, certificates and ACL are loaded
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err} {self.log_text()}")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not listen: {self.log_text()}") from None
                time.sleep(0.01)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None


def site_acl(path: Path) -> Path:
    """The shipped ACL example, as the broker would load it."""
    shutil.copy(ACL_EXAMPLE, path)
    return path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsMosquitto]:
    """The shipped ACL, users parkctl/ctl-secret, L1/l1-secret, L2/l2-secret, gridco/grid-secret."""
    certs = make_certs(tmp_path / "certs")
    passwd = make_passwd(tmp_path / "passwd", USERS)
    broker = TlsMosquitto(tmp_path, certs, passwd, site_acl(tmp_path / "acl"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


USERS: Mapping[str, str] = {"parkctl": "ctl-secret", "L1": "l1-secret", "L2": "l2-secret", "gridco": "grid-secret"}
