"""``parkctl dr ...``: demand-response tools. ``dr send`` plays the grid company's side.

Kept free of heavy imports at module level so ``parkctl --help`` stays fast. A new tool is one
``add_parser`` call in :func:`add_dr_parser` with ``set_defaults(dr_handler=...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from parkctl.argtypes import bounded_float

NOTICES = ("DAY_AHEAD", "PRE_AGREED", "REAL_TIME")
_HUMAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)", re.IGNORECASE)
EXIT_ACCEPTED, EXIT_REJECTED, EXIT_NO_ACK = 0, 1, 2


def duration_arg(text: str) -> timedelta:
    """``1h``, ``15min``, ``90s`` or ISO-8601 ``PT15M``."""
    m = _HUMAN.fullmatch(text.strip())
    if m:
        value = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[m.group(2).lower()]
        if value > 0:
            return timedelta(seconds=value)
    from dr.wire import EventError, parse_duration

    try:
        return parse_duration(text.strip(), "--duration")
    except EventError as exc:
        raise argparse.ArgumentTypeError(f"duration must be like 1h, 15min or PT15M: {exc.detail}") from None


def aware_arg(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-07-16T19:00:00+08:00")
    return ts


def add_dr_parser(subparsers: Any) -> None:
    dr = subparsers.add_parser("dr", help="demand-response tools (send a test event, ...)")
    sub = dr.add_subparsers(dest="dr_command", required=True)
    send = sub.add_parser("send", help="publish a DR event as the grid company would, and wait for the ack")
    send.set_defaults(dr_handler=cmd_send)
    send.add_argument("--mqtt-url", required=True, help="mqtt://host[:port] or mqtts://host[:port] (TLS)")
    send.add_argument("--ca-file", type=Path, help="mqtts: the CA that signed the broker (default: system store)")
    send.add_argument("--username", help="broker account (the grid company's)")
    send.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    send.add_argument("--site", required=True, help="the site name (topic park/SITE/dr/event)")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, help="an OpenADR-3-shaped event (JSON), sent as is")
    what.add_argument("--cap-kw", type=bounded_float("cap", -1e-9, 1e6, "kW"), help="an import cap event")
    what.add_argument("--cancel", metavar="ID", help="cancel the event ID")
    send.add_argument("--start", type=aware_arg, help="with --cap-kw: start, ISO-8601 with offset")
    send.add_argument("--duration", type=duration_arg, help="with --cap-kw: 1h, 15min, PT15M...")
    send.add_argument("--notice", choices=NOTICES, default="REAL_TIME")
    send.add_argument("--programme", default="default", help="programID (must be configured at the park)")
    send.add_argument("--id", help="event id (default: a fresh one)")
    send.add_argument("--modification", type=int, default=0, help="modificationNumber (cancel: >= the event's)")
    send.add_argument("--timeout", type=bounded_float("timeout", 0, 300, "s"), default=10.0, help="ack wait, s")
    rep = sub.add_parser("report", help="write each event's evidence (JSON, CSV) and dr_events.json")
    rep.set_defaults(dr_handler=cmd_report)
    rep.add_argument("--db", type=Path, required=True, help="the controller's database file (read only)")
    rep.add_argument("--out", type=Path, required=True, help="directory to write the reports into")


def cmd_dr(args: argparse.Namespace) -> int:
    handler = args.dr_handler
    return int(handler(args))


def cmd_report(args: argparse.Namespace) -> int:
    from dr.report import write_reports

    for path in write_reports(args.db, args.out):
        print(path)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    return asyncio.run(run_send(args))


def build_payload(args: argparse.Namespace) -> tuple[bytes, str]:
    """The bytes to publish and the event id whose ack to wait for."""
    from dr.event import DrEventSpec, DrInterval
    from dr.wire import EventError, decode_event, encode_event, peek_event_id
    from parkctl.errors import ConfigError

    if args.file is not None:
        payload = Path(args.file).read_bytes()
        try:
            return payload, decode_event(payload).event_id
        except EventError as exc:  # still sent: testing how the park refuses it is a use of this tool
            print(f"parkctl dr send: warning: {args.file} is not a valid event ({exc})", file=sys.stderr)
            peeked = peek_event_id(payload)
            if peeked is None:
                raise ConfigError(f"{args.file}: no readable event id; nothing to wait for") from None
            return payload, peeked[0]
    created = datetime.now().astimezone()
    if args.cancel is not None:
        spec = DrEventSpec(args.cancel, args.programme, args.modification, 0, args.notice, created, (), True)
        return encode_event(spec), args.cancel
    if args.start is None or args.duration is None:
        raise ConfigError("--cap-kw needs --start and --duration")
    event_id = args.id or f"cli-{uuid.uuid4().hex[:8]}"
    iv = DrInterval(args.start, args.start + args.duration, "import_cap", float(args.cap_kw))
    spec = DrEventSpec(event_id, args.programme, args.modification, 0, args.notice, created, (iv,))
    return encode_event(spec), event_id


def _password(var: str | None) -> str | None:
    import os

    from parkctl.errors import ConfigError

    if var is None:
        return None
    if var not in os.environ:
        raise ConfigError(f"--password-env: the environment variable {var!r} is not set")
    return os.environ[var]


async def run_send(args: argparse.Namespace) -> int:
    """Publish, wait, print the ack; exit 0 accepted/updated/cancelled, 1 rejected, 2 no ack."""
    import aiomqtt

    from dr.mqtt import send_event, sender_endpoint
    from dr.wire import encode_ack
    from drivers.mqtt_url import parse_mqtt_url
    from parkctl.errors import BrokerUnavailable

    payload, event_id = build_payload(args)
    url = parse_mqtt_url(args.mqtt_url)
    try:
        endpoint = sender_endpoint(url, ca_file=args.ca_file, username=args.username,
                                   password=_password(args.password_env))  # fmt: skip
        ack = await send_event(endpoint, args.site, payload, event_id, args.timeout)
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(f"{url}: {exc}") from None
    if ack is None:
        print(f"no ack for event {event_id} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NO_ACK
    print(json.dumps(json.loads(encode_ack(ack)), ensure_ascii=False))
    return EXIT_REJECTED if ack.status == "rejected" else EXIT_ACCEPTED
