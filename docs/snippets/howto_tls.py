"""How-to: wss:// with a private certificate authority.

The server's certificate is signed by your own CA: give the client an ``ssl.SSLContext`` that
trusts it. Here ``trustme`` makes the CA, and a TLS front (``trio.serve_ssl_over_tcp``)
relays to the embedded server, as a TLS-terminating proxy would in front of Phoenix.
"""

import ssl
from functools import partial

import trio
import trustme

from trio_phoenix import ConnectError, open_socket
from trio_phoenix.testing import demo_channels, open_test_server


async def relay(port: int, client: trio.SSLStream[trio.SocketStream]) -> None:
    """Forward one TLS connection to the plain server at ``port``."""

    async def pump(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        async for chunk in source:
            await sink.send_all(chunk)

    try:
        async with (
            client,
            await trio.open_tcp_stream("127.0.0.1", port) as upstream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(pump, client, upstream)
            await pump(upstream, client)
            nursery.cancel_scope.cancel()
    except* trio.BrokenResourceError:
        pass  # a client hung up (one that does not trust the certificate does so at once)


async def main() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    # The client side: trust the private CA (in real life: cafile="my-ca.pem").
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async with open_test_server(demo_channels()) as server, trio.open_nursery() as nursery:
        handler = partial(relay, server.port)
        [listener] = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handler, 0, server_context, host="127.0.0.1")
        )
        url = f"wss://127.0.0.1:{listener.transport_listener.socket.getsockname()[1]}/socket"

        async with (
            open_socket(url, ssl_context=client_context) as socket,
            socket.channel("echo:tls") as channel,
        ):
            print(await channel.push("echo", {"secure": True}))  # {'secure': True}

        try:  # without the CA, verification fails, and says so at once
            with trio.fail_after(10):
                async with open_socket(url):
                    pass
        except ConnectError as exc:
            print("refused:", type(exc.__cause__).__name__)
        nursery.cancel_scope.cancel()


trio.run(main)
