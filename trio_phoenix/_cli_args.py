"""The ``trio-phoenix`` command line's arguments: the parser, its argument types and help.

Kept apart from ``__main__`` (which runs the commands) so that each stays a module a reader
can hold; ``__main__`` imports what it needs from here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from . import __version__

_PROG: Final = "trio-phoenix"
_EXIT_STATUS_HELP: Final = """\
exit status:
  0    success
  1    the server answered with an error (error reply, or it closed the channel)
  2    usage error (bad arguments, bad JSON, bad URL)
  3    could not connect or join (refused, unreachable, rejected upgrade, join refused)
  4    no reply (the push timed out, or the connection dropped before the reply)
  130  interrupted (Ctrl-C)
"""


_SERVE_HELP: Final = """\
  room:*  chat with presence: join with {{"user": NAME}}, push new_msg {{"body": TEXT}}
  echo:*  echo, error, noreply, crash, stop, push, broadcast, push_binary, ...
try:
  {prog} listen {url} room:lobby
  {prog} push {url} room:lobby new_msg '{{"body": "hi"}}'
Ctrl-C stops the server."""


# -- argument types ------------------------------------------------------------------------------


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


# -- the parser -----------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)"
    )

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Talk to a Phoenix Channels server from the command line, or run the "
        "in-process test server and the chat demo.",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=formatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("url", help="the socket's mount URL, e.g. ws://localhost:4000/socket")
    connection.add_argument("topic", help="the channel topic, e.g. room:lobby")
    group = connection.add_argument_group("connection options")
    group.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="NAME=VALUE",
        help="a connect param, sent in the URL query (repeatable)",
    )
    group.add_argument(
        "--token",
        help="an auth token, sent as Phoenix's Sec-WebSocket-Protocol bearer entry "
        "(auth_token: true on the server's socket)",
    )
    group.add_argument(
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra HTTP header for the upgrade request (repeatable)",
    )
    group.add_argument(
        "--join-params",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="the channel's join params, a JSON object",
    )
    group.add_argument(
        "--timeout",
        type=_positive,
        metavar="SECONDS",
        help="timeout of the join and the push (default: 10)",
    )
    group.add_argument(
        "--connect-timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="timeout of one connection attempt (default: 10)",
    )
    group.add_argument(
        "--retry",
        action="store_true",
        help="keep retrying when the server cannot be reached (default: exit with status 3)",
    )
    group.add_argument(
        "--vsn", choices=("1", "2"), default="2", help="the serializer version (default: 2)"
    )
    tls = connection.add_argument_group("TLS options (wss://)")
    tls.add_argument("--cafile", help="verify the server's certificate with this CA bundle")
    tls.add_argument("--certfile", help="a client certificate (PEM), for mutual TLS")
    tls.add_argument("--keyfile", help="the client certificate's key, if not in --certfile")
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the certificate (testing only)"
    )

    listen = commands.add_parser(
        "listen",
        help="print a topic's messages as JSON lines",
        description="Join TOPIC and print its messages as JSON lines: "
        '{"topic", "event", "payload", "join_ref", "ref"} (a binary payload comes as "binary", '
        "base64). Status lines go to stderr. Lost connections are reconnected and the topic is "
        "rejoined.",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=formatter,
        parents=[common, connection],
    )
    listen.add_argument(
        "--event",
        action="append",
        default=[],
        help="print only this event (repeatable; default: every event)",
    )
    listen.add_argument("--count", type=_count, metavar="N", help="stop after N messages")
    listen.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")

    push = commands.add_parser(
        "push",
        help="push an event and print the reply",
        description='Join TOPIC, push EVENT with a JSON payload and print the reply: {"status", '
        '"response"} (a binary response comes as "binary", base64).',
        epilog=_EXIT_STATUS_HELP,
        formatter_class=formatter,
        parents=[common, connection],
    )
    push.add_argument("event", help="the event name, e.g. new_msg")
    push.add_argument(
        "payload", nargs="?", type=_json_value, metavar="JSON", help="the payload (default: {})"
    )

    serve = commands.add_parser(
        "serve",
        help="run the in-process test server with the demo room",
        description="Run trio_phoenix's in-process Phoenix-protocol test server with the demo "
        "channels (room:* chat with presence, echo:*) until Ctrl-C.",
        parents=[common],
    )
    serve.add_argument("--host", default="127.0.0.1", help="the address (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=4000, help="the port (default: 4000; 0 picks a free one)"
    )
    serve.add_argument(
        "--bots", action="store_true", help="put simulated users (alice, bob) in room:lobby"
    )
    serve.add_argument("--token", help="refuse connections that do not present this auth token")

    demo = commands.add_parser(
        "demo",
        help="run the scripted chat demo on an embedded server",
        description="Run the scripted chat demo (what `make demo` shows) on an embedded server.",
        parents=[common],
    )
    demo.add_argument("--name", default="you", help="your user name (default: you)")
    demo.add_argument(
        "--pace",
        type=float,
        default=0.4,
        metavar="SECONDS",
        help="seconds between scripted lines (default: 0.4)",
    )
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``, accepting a command's options anywhere among its positionals.

    argparse cannot mix options and positionals across subcommands
    (``parse_intermixed_args`` refuses subparsers), so the command's own arguments are parsed
    again, intermixed, by its subparser.
    """
    args, _ = parser.parse_known_args(argv)
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    position = argv.index(args.command)
    command: argparse.ArgumentParser = subparsers.choices[args.command]
    return command.parse_intermixed_args(argv[position + 1 :], namespace=args)
