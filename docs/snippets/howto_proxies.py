"""How-to: connect through an HTTP or SOCKS proxy.

Here ``pproxy`` (from PyPI, a test dependency) stands in for your company's proxy: an HTTP
CONNECT proxy that wants a user and password, on a loopback port. In real life, the proxy
is already there and usually named by ``HTTPS_PROXY`` in the environment.
"""

import os
import socket as stdlib_socket
import subprocess
import sys

import trio

from trio_phoenix import ConnectError, open_socket
from trio_phoenix.testing import demo_channels, open_test_server


def free_port() -> int:
    with stdlib_socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_listening(port: int) -> None:
    with trio.fail_after(20):
        while True:
            try:
                await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                return
            except OSError:
                await trio.sleep(0.05)


async def main() -> None:
    port = free_port()
    command = [sys.executable, "-m", "pproxy", "-l", f"http://127.0.0.1:{port}/#me:secret"]
    command += ["--auth", "0"]  # ask for the password on every connection
    proxy = await trio.lowlevel.open_process(command, stdout=subprocess.DEVNULL)
    try:
        await wait_listening(port)
        async with open_test_server(demo_channels()) as server:
            # 1. Name the proxy (user and password in the URL; they are never logged).
            async with (
                open_socket(server.url, proxy=f"http://me:secret@127.0.0.1:{port}") as socket,
                socket.channel("echo:proxy") as channel,
            ):
                print(await channel.push("echo", {"via": "proxy"}))  # {'via': 'proxy'}

            # 2. Or let the environment name it, as curl and requests do (read at connect time).
            os.environ["HTTP_PROXY"] = f"http://me:secret@127.0.0.1:{port}"
            os.environ["NO_PROXY"] = "internal.example"  # hosts reached directly
            async with open_socket(server.url):
                print("connected through HTTP_PROXY")
            # proxy=None connects directly, whatever the environment says.
            async with open_socket(server.url, proxy=None):
                print("connected directly")

            # 3. Wrong credentials are not worth retrying: the first connect says so at once.
            try:
                async with open_socket(server.url, proxy=f"http://me:wrong@127.0.0.1:{port}"):
                    pass
            except ConnectError as exc:
                print(exc)  # the HTTP proxy ... rejected the user and password ...
    finally:
        proxy.terminate()
        await proxy.wait()


trio.run(main)
