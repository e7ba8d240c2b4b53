"""What the serializer tests (``tests/proto/test_serializer_*.py``) share: one serializer of
each version and role, the lists of all four (with test ids), and `b` to write binary frames.

Every serializer test runs with each JSON decoder (``pytestmark = usefixtures("json_backend")``,
the fixture of ``tests/proto/conftest.py``). Golden frames come from protocol.md §2.1-2.3
(Phoenix's serializers), §12.4 (phoenix.js's serializer_test.js) and §13 (wire transcripts).
Decoders must only ever raise ``RemoteProtocolError`` (a ``ProtocolError``), whatever arrives.
"""

from __future__ import annotations

from trio_phoenix.proto import Serializer, V1JSONSerializer, V2JSONSerializer

V2_CLIENT = V2JSONSerializer()
V2_SERVER = V2JSONSerializer("server")
V1_CLIENT = V1JSONSerializer()
V1_SERVER = V1JSONSerializer("server")


def b(*parts: int | str | bytes) -> bytes:
    """Bytes from ints (single bytes), str (UTF-8) and bytes."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str):
            out += part.encode("utf-8")
        else:
            out += part
    return bytes(out)


ALL_SERIALIZERS: list[Serializer] = [V2_CLIENT, V2_SERVER, V1_CLIENT, V1_SERVER]
SERIALIZER_IDS = ["v2-client", "v2-server", "v1-client", "v1-server"]
