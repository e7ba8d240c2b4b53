"""The ``trio-phoenix`` command line (also ``python -m trio_phoenix``).

Commands:

``listen URL TOPIC``
    Join ``TOPIC`` and print its messages as JSON lines, one object per message:
    ``{"topic", "event", "payload", "join_ref", "ref"}`` (a binary payload is given as
    ``"binary"``, base64, instead of ``"payload"``). Status lines go to stderr. The socket
    reconnects and rejoins by itself; ``--count N`` stops after N messages.
``push URL TOPIC EVENT [JSON]``
    Join ``TOPIC``, push ``EVENT`` with the JSON payload (``{}`` by default) and print the
    reply as ``{"status", "response"}`` (``"binary"`` for a binary response).
``serve``
    Run the in-process test server with the demo channels (``room:*``: chat with presence,
    ``echo:*``) until Ctrl-C.
``demo``
    Run the scripted chat demo (``make demo``) on an embedded server.

Exit status: 0 success; 1 the server answered with an error (an error reply, or it closed the
channel); 2 usage error (bad arguments, bad JSON, bad URL); 3 could not connect or join;
4 no reply (the push timed out or its reply was lost); 130 interrupted.

Functions: `run` (``run(argv) -> status``, for tests and embedding) and `main` (the console
script).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn

import trio

from . import (
    ChannelClosed,
    ChannelJoined,
    Connected,
    ConnectError,
    ConnectFailed,
    Disconnected,
    InvalidURL,
    JoinError,
    JoinTimeout,
    LifecycleEvent,
    Message,
    PhoenixError,
    PushError,
    PushTimeout,
    ReplyLost,
    Socket,
    Subscription,
    V1JSONSerializer,
    V2JSONSerializer,
    open_socket,
    phoenix_reconnect_after,
)
from ._cli_args import _PROG, _SERVE_HELP, _build_parser, _parse

__all__ = [
    "EXIT_CONNECT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NO_REPLY",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
    "run",
]

#: Success.
EXIT_OK: Final = 0
#: The server answered with an error: an error reply, or it closed the channel.
EXIT_ERROR: Final = 1
#: Bad arguments (argparse's own status): bad JSON, bad URL, unknown option...
EXIT_USAGE: Final = 2
#: Could not connect (refused, unreachable, upgrade rejected, TLS failure) or join.
EXIT_CONNECT: Final = 3
#: No reply: the push timed out, or the connection dropped before its reply.
EXIT_NO_REPLY: Final = 4
#: Interrupted with Ctrl-C.
EXIT_INTERRUPTED: Final = 130


class _Failure(Exception):
    """A failure with a message for stderr and an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status)
        self.message = message
        self.status = status


def _note(message: str) -> None:
    """A status line on stderr."""
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


# -- output ---------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _with_payload(record: dict[str, Any], key: str, payload: Any) -> dict[str, Any]:
    if isinstance(payload, bytes):
        record["binary"] = base64.b64encode(payload).decode("ascii")
    else:
        record[key] = payload
    return record


def _closed(topic: str, exc: ChannelClosed) -> str:
    return f"the server closed {topic}" + (f" ({_dumps(exc.payload)})" if exc.payload else "")


def _message_record(message: Message) -> dict[str, Any]:
    """A message as the JSON object ``listen`` prints."""
    record: dict[str, Any] = {"topic": message.topic, "event": message.event}
    _with_payload(record, "payload", message.payload)
    record["join_ref"] = message.join_ref
    record["ref"] = message.ref
    return record


def _print_line(line: str) -> bool:
    """Print ``line`` to stdout; ``False`` once stdout is a closed pipe.

    Later writes (and the interpreter's final flush) then go to ``os.devnull``, so a reader
    that stops early, like ``head`` or ``jq`` in a pipeline, ends ``listen`` with status 0 and
    no "Broken pipe" noise, as ``cat`` does.
    """
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


# -- connecting -----------------------------------------------------------------------------------


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of the TLS options, or ``None`` (the client's verified default)."""
    if not (args.cafile or args.insecure or args.certfile):
        return None
    try:
        context = ssl.create_default_context(cafile=args.cafile)
        if args.certfile:
            context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise _Failure(f"cannot load the TLS files: {exc}", EXIT_USAGE) from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _socket_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``open_socket`` options of the connection options."""
    options: dict[str, Any] = {
        "params": dict(args.param),
        "headers": list(args.header),
        "ssl_context": _ssl_context(args),
        "connect_timeout": args.connect_timeout,
        # A command-line tool should not linger on exit: leaving the channel and the closing
        # handshake take milliseconds on a healthy server, so 1 s (not 5) bounds them.
        "close_timeout": 1.0,
        "serializer": V1JSONSerializer() if args.vsn == "1" else V2JSONSerializer(),
    }
    if args.token:
        options["auth_token"] = args.token
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return options


class _FirstConnection:
    """The reconnect policy of the CLI: phoenix.js's, except before the first connection.

    Without ``--retry`` the CLI gives up on the first failed attempt; meanwhile the socket must
    not try again, so the delay is long (the socket is closed long before it ends).
    """

    def __init__(self, retry: bool) -> None:
        self.retry = retry
        self.connected = False

    def __call__(self, attempt: int) -> float:
        if self.connected or self.retry:
            return phoenix_reconnect_after(attempt)
        return 3600.0


@asynccontextmanager
async def _connected(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[Socket, Subscription[LifecycleEvent]]]:
    """Open the socket; fail with EXIT_CONNECT if the first attempt fails (unless --retry)."""
    policy = _FirstConnection(args.retry)
    try:
        options = _socket_options(args)
        opened = open_socket(args.url, wait_connected=False, reconnect_after=policy, **options)
        async with opened as socket, socket.lifecycle() as events:
            async for event in events:
                if isinstance(event, Connected):
                    break
                if isinstance(event, ConnectFailed):
                    if not args.retry:
                        raise _Failure(str(event.error), EXIT_CONNECT)
                    _note(f"{event.error}; retrying")
            policy.connected = True
            yield socket, events
    except InvalidURL as exc:
        raise _Failure(str(exc), EXIT_USAGE) from None


async def _report(events: Subscription[LifecycleEvent], topic: str) -> None:
    """Status lines for the connection's ups and downs (the socket reconnects by itself)."""
    async for event in events:
        if isinstance(event, Disconnected):
            _note(f"disconnected (code {event.code}); reconnecting")
        elif isinstance(event, ConnectFailed):
            _note(f"{event.error}; retrying")
        elif isinstance(event, ChannelJoined) and event.rejoin and event.topic == topic:
            _note(f"rejoined {topic}")


# -- commands -------------------------------------------------------------------------------------


async def _listen(args: argparse.Namespace) -> int:
    """``listen``: print the topic's messages as JSON lines."""
    received = 0
    async with _connected(args) as (socket, events):
        channel = socket.channel(args.topic, args.join_params)
        async with channel.subscribe(*args.event, max_buffer=10_000) as messages, channel:
            if not args.quiet:
                _note(f"joined {args.topic}: {_dumps(channel.join_response)}")
            async with trio.open_nursery() as nursery:
                if not args.quiet:
                    nursery.start_soon(_report, events, args.topic)
                try:
                    async for message in messages:
                        if not _print_line(_dumps(_message_record(message))):
                            break  # the reader went away (`| head -1`): done, quietly
                        received += 1
                        if args.count is not None and received >= args.count:
                            break
                except ChannelClosed as exc:
                    raise _Failure(_closed(args.topic, exc), EXIT_ERROR) from None
                nursery.cancel_scope.cancel()
    return EXIT_OK


async def _push(args: argparse.Namespace) -> int:
    """``push``: push one event, print the reply; the status tells the outcome."""
    payload = {} if args.payload is None else args.payload
    async with _connected(args) as (socket, _), socket.channel(args.topic, args.join_params) as ch:
        try:
            response = await ch.push(args.event, payload)
        except PushError as exc:
            print(_dumps(_with_payload({"status": exc.status}, "response", exc.response)))
            return EXIT_ERROR
        except PushTimeout as exc:
            raise _Failure(str(exc), EXIT_NO_REPLY) from None
        except ReplyLost as exc:
            raise _Failure(str(exc), EXIT_NO_REPLY) from None
        except ChannelClosed as exc:
            raise _Failure(_closed(args.topic, exc), EXIT_ERROR) from None
        print(_dumps(_with_payload({"status": "ok"}, "response", response)), flush=True)
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> int:
    """``serve``: the demo server (and optionally its simulated users) until Ctrl-C."""
    from .demo import DEMO_USERS, open_chat_demo

    users = DEMO_USERS if args.bots else ()
    async with open_chat_demo(users, token=args.token, host=args.host, port=args.port) as d:
        print(f"{_PROG}: serving the demo channels on {d.url}", flush=True)
        print(_SERVE_HELP.format(url=d.url, prog=_PROG), flush=True)
        if users:
            print(f"{' and '.join(users)} are in room:lobby.", flush=True)
        await _until_stopped()
    _note("stopped")
    return EXIT_OK


async def _until_stopped() -> None:
    """Return on Ctrl-C or SIGTERM (only the main thread can receive signals)."""
    if threading.current_thread() is not threading.main_thread():
        await trio.sleep_forever()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def _demo(args: argparse.Namespace) -> int:
    """``demo``: the scripted chat demo of ``make demo``."""
    from .demo import run_chat_demo

    trio.run(lambda: run_chat_demo(name=args.name, pace=args.pace))
    return EXIT_OK


# -- entry points ---------------------------------------------------------------------------------


def _configure_logging(verbosity: int) -> None:
    """``-v``: the library's logs on stderr; otherwise errors are only reported by the CLI."""
    if verbosity:
        logging.basicConfig(
            level=logging.DEBUG if verbosity > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
        return
    # Without -v errors are reported once, by the CLI; the library's own NullHandler keeps its
    # warnings off stderr.


def _fail(message: str, status: int) -> int:
    _note(message)
    return status


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Nothing raises out of it (except bugs): errors are reported on stderr.
    """
    parser = _build_parser()
    try:
        args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose)
    commands = {"listen": _listen, "push": _push, "serve": _serve}
    try:
        if args.command == "demo":
            return _demo(args)
        status: int = trio.run(commands[args.command], args)
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Failure as exc:
        return _fail(exc.message, exc.status)
    except ConnectError as exc:
        return _fail(str(exc), EXIT_CONNECT)
    except (JoinError, JoinTimeout) as exc:
        return _fail(str(exc), EXIT_CONNECT)
    except PhoenixError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    except OSError as exc:  # e.g. serve: the port is taken
        return _fail(str(exc), EXIT_CONNECT)


def main() -> NoReturn:
    """The console script: ``sys.exit(run())``."""
    sys.exit(run())


if __name__ == "__main__":
    main()
