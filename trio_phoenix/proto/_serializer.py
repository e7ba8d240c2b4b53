"""Serializers: Phoenix messages to frames and back, for both ends of the socket.

Rules this module keeps:

1. One small interface, ``Serializer``: ``encode(message) -> str | bytes`` for the frames this
   peer sends and ``decode(frame) -> Message`` for the frames the other peer sends. A serializer
   is built for one *role*: the client's (the default) or the server's (used by
   ``trio_phoenix.testing``). The role decides the binary layouts, which differ per direction.
2. Decoding never raises anything but ``RemoteProtocolError``, whatever text or bytes arrive.
3. Encoding raises ``EncodeError`` (a ``ValueError``) for what cannot go on the wire: a payload
   that is not JSON, a binary field over 255 UTF-8 bytes, bytes over V1.
4. Text frames are compact JSON (``separators=(",", ":")``, non-ASCII kept), as phoenix.js's
   ``JSON.stringify`` and Phoenix's Jason produce.
5. With orjson installed (the ``fast`` extra), text frames are decoded by orjson, with exactly
   the stdlib decoder's results and rejections: a frame orjson refuses, or where the two could
   differ (a run of 19 or more digits: orjson reads an integer outside the 64-bit range as a
   float, and -9223372036854775809 has 19 digits; 500 or more brackets,
   near the stdlib's nesting limit), is decoded by the stdlib as without orjson. Encoding is
   always the stdlib's (orjson writes NaN as ``null`` instead of refusing it).
"""

from __future__ import annotations

import json
import math
import struct
from types import ModuleType
from typing import Any, Final, Literal, Protocol

from ._errors import EncodeError, RemoteProtocolError
from ._message import PHX_REPLY, Message

__all__ = [
    "V1_VSN",
    "V2_VSN",
    "Frame",
    "Serializer",
    "V1JSONSerializer",
    "V2JSONSerializer",
]

V1_VSN: Final = "1.0.0"
V2_VSN: Final = "2.0.0"

#: A WebSocket message: text for JSON frames, bytes for V2 binary frames.
Frame = str | bytes

Role = Literal["client", "server"]

_KIND_PUSH: Final = 0
_KIND_REPLY: Final = 1
_KIND_BROADCAST: Final = 2
_MAX_FIELD: Final = 255

_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _encode_json(value: Any) -> str:
    """``_json_encoder.encode(value)``: the same C encoder, made directly (the stdlib also
    makes one per call, after building a float formatter it does not use)."""
    if _c_make_encoder is None:  # pragma: no cover - CPython without its _json module
        return _json_encoder.encode(value)
    make = _c_make_encoder(
        {},
        _json_encoder.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )
    return "".join(make(value, 0))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


# NaN and Infinity are not JSON, nor is a number too large for a double (1e999): Phoenix's
# Jason and JSON.parse reject them, and so do we.
_decode_json = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float).decode


class Serializer(Protocol):
    """What the socket needs from a serializer."""

    @property
    def vsn(self) -> str:
        """The ``vsn`` query parameter that selects this serializer on the server."""
        ...

    def encode(self, message: Message) -> Frame:
        """Encode a message this peer sends.

        Raises:
            EncodeError: the message cannot be represented in this format.
        """
        ...

    def decode(self, frame: Frame) -> Message:
        """Decode a frame the other peer sent.

        Raises:
            RemoteProtocolError: the frame is malformed.
        """
        ...


def _dump(value: Any) -> str:
    try:
        text = _encode_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(f"payload is not JSON-serializable: {exc}") from exc
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate cannot travel in a UTF-8 text frame; JSON.stringify escapes
            # it, and so do we (the escaped form decodes to the same string).
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text


def _load_stdlib(frame: str) -> Any:
    try:
        return _decode_json(frame)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"frame is not valid JSON: {exc}") from exc


_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the fast extra is not installed
    _orjson = None

#: Below this many brackets, a frame nests less deep than the stdlib decoder's limit.
_FEW_BRACKETS: Final = 500
#: Every digit to ``0``, everything else to a space: a run of 19 digits becomes 19 zeros.
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
#: The shortest integer orjson reads as a float (-9223372036854775809) has 19 digits.
_LONG_DIGITS: Final = b"0" * 19


def _load_orjson(frame: str) -> Any:
    """orjson where its result is the stdlib's; the stdlib where it refuses or could differ."""
    assert _orjson is not None
    data = frame.encode("utf-8", "surrogatepass")
    size = len(data)
    if (size < _FEW_BRACKETS or data.count(b"[") + data.count(b"{") < _FEW_BRACKETS) and (
        size < len(_LONG_DIGITS) or _LONG_DIGITS not in data.translate(_DIGITS_ONLY)
    ):
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # the stdlib decides, with its own message
    return _load_stdlib(frame)


#: The JSON decoder of text frames (``orjson`` when installed, else ``json``).
JSON_BACKEND: Final = "json" if _orjson is None else "orjson"
_load = _load_stdlib if _orjson is None else _load_orjson


def _check_ref(value: object, name: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise RemoteProtocolError(f"{name} must be a string or null, got {type(value).__name__}")


def _check_name(value: object, name: str) -> str:
    if type(value) is str:
        return value
    raise RemoteProtocolError(f"{name} must be a string, got {type(value).__name__}")


class V2JSONSerializer:
    """The V2 serializer (``vsn=2.0.0``): JSON arrays in text frames, payloads as binary frames.

    Text frames are ``[join_ref, ref, topic, event, payload]``. A ``bytes`` payload goes as a
    binary frame; the binary layout depends on the direction (protocol reference §2.2): a
    client sends kind 0 with a 5-byte header, a server sends kind 0 pushes with a 4-byte header
    (no ref), kind 1 replies and kind 2 broadcasts.
    """

    vsn: Final = V2_VSN

    def __init__(self, role: Role = "client") -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        self.role: Final = role

    def __repr__(self) -> str:
        return f"V2JSONSerializer(role={self.role!r})"

    # -- encoding --------------------------------------------------------------------------

    def encode(self, message: Message) -> Frame:
        """The frame for ``message``: a JSON array, or a binary frame for ``bytes`` payloads.

        Raises:
            EncodeError: the payload is not JSON, or a binary frame's field is too long.
        """
        payload = message.payload
        if self.role == "server" and message.event == PHX_REPLY:
            if isinstance(payload, dict) and isinstance(
                payload.get("response"), bytes | bytearray | memoryview
            ):
                return self._encode_server_binary_reply(message)
        elif isinstance(payload, bytes | bytearray | memoryview):
            if self.role == "client":
                return _binary(
                    _KIND_PUSH,
                    (
                        ("join_ref", message.join_ref or ""),
                        ("ref", message.ref or ""),
                        ("topic", message.topic),
                        ("event", message.event),
                    ),
                    payload,
                )
            if message.join_ref is None and message.ref is None:
                return _binary(
                    _KIND_BROADCAST,
                    (("topic", message.topic), ("event", message.event)),
                    payload,
                )
            return _binary(
                _KIND_PUSH,
                (
                    ("join_ref", message.join_ref or ""),
                    ("topic", message.topic),
                    ("event", message.event),
                ),
                payload,
            )
        return _dump([message.join_ref, message.ref, message.topic, message.event, payload])

    def _encode_server_binary_reply(self, message: Message) -> bytes:
        payload = message.payload
        return _binary(
            _KIND_REPLY,
            (
                ("join_ref", message.join_ref or ""),
                ("ref", message.ref or ""),
                ("topic", message.topic),
                ("status", _status_text(payload.get("status"))),
            ),
            payload["response"],
        )

    # -- decoding --------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Message:
        """The message in ``frame`` (a text or a binary frame of this serializer's peer).

        Raises:
            RemoteProtocolError: the frame is malformed.
        """
        if isinstance(frame, str):
            return self._decode_text(frame)
        if isinstance(frame, bytes | bytearray | memoryview):
            return self._decode_binary(bytes(frame))
        raise RemoteProtocolError(f"frame must be str or bytes, got {type(frame).__name__}")

    def _decode_text(self, frame: str) -> Message:
        data = _load(frame)
        if type(data) is not list or len(data) < 5:
            raise RemoteProtocolError(
                "V2 frame must be a JSON array [join_ref, ref, topic, event, payload]"
            )
        join_ref, ref, topic, event, payload = data[:5]
        if (
            (join_ref is None or type(join_ref) is str)
            and (ref is None or type(ref) is str)
            and type(topic) is str
            and type(event) is str
        ):
            return Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)
        return Message(
            join_ref=_check_ref(join_ref, "join_ref"),
            ref=_check_ref(ref, "ref"),
            topic=_check_name(topic, "topic"),
            event=_check_name(event, "event"),
            payload=payload,
        )

    def _decode_binary(self, frame: bytes) -> Message:
        if not frame:
            raise RemoteProtocolError("empty binary frame")
        kind = frame[0]
        if self.role == "server":
            if kind != _KIND_PUSH:
                raise RemoteProtocolError(f"a client binary frame must be a push (0), got {kind}")
            (join_ref, ref, topic, event), payload = _split(frame, 4)
            # Phoenix keeps empty refs as "" (so an empty join_ref counts as a stale one).
            return Message(join_ref=join_ref, ref=ref, topic=topic, event=event, payload=payload)
        if kind == _KIND_PUSH:
            (join_ref, topic, event), payload = _split(frame, 3)
            # phoenix.js keeps the join_ref of a push as sent, even "" (then it matches any).
            return Message(join_ref=join_ref, ref=None, topic=topic, event=event, payload=payload)
        if kind == _KIND_REPLY:
            (join_ref, ref, topic, status), payload = _split(frame, 4)
            return Message(
                join_ref=join_ref or None,
                ref=ref or None,
                topic=topic,
                event=PHX_REPLY,
                payload={"status": status, "response": payload},
            )
        if kind == _KIND_BROADCAST:
            (topic, event), payload = _split(frame, 2)
            return Message(join_ref=None, ref=None, topic=topic, event=event, payload=payload)
        raise RemoteProtocolError(f"unknown binary frame kind {kind}")


class V1JSONSerializer:
    """The legacy V1 serializer (``vsn=1.0.0``, or no ``vsn`` at all): JSON objects, no binary.

    A client sends ``{"topic", "event", "payload", "ref", "join_ref"}``; a server sends
    ``{"topic", "event", "payload", "ref"}`` and never a join_ref.
    """

    vsn: Final = V1_VSN

    def __init__(self, role: Role = "client") -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        self.role: Final = role

    def __repr__(self) -> str:
        return f"V1JSONSerializer(role={self.role!r})"

    def encode(self, message: Message) -> Frame:
        """The text frame for ``message``: a JSON object.

        Raises:
            EncodeError: the payload is not JSON, or holds ``bytes`` (V1 has no binary frames).
        """
        if _contains_bytes(message.payload):
            raise EncodeError("the V1 serializer cannot carry binary payloads; use V2")
        data: dict[str, Any] = {
            "event": message.event,
            "payload": message.payload,
            "ref": message.ref,
            "topic": message.topic,
        }
        if self.role == "client":
            data["join_ref"] = message.join_ref
        return _dump(data)

    def decode(self, frame: Frame) -> Message:
        """The message in a text ``frame``.

        Raises:
            RemoteProtocolError: the frame is binary or malformed.
        """
        if not isinstance(frame, str):
            raise RemoteProtocolError("the V1 serializer only accepts text frames")
        data = _load(frame)
        if type(data) is not dict:
            raise RemoteProtocolError(f"V1 frame must be a JSON object, got {type(data).__name__}")
        for key in ("topic", "event", "payload", "ref"):
            if key not in data:
                raise RemoteProtocolError(f"V1 frame is missing the key {key!r}")
        return Message(
            join_ref=_check_ref(data.get("join_ref"), "join_ref"),
            ref=_check_ref(data["ref"], "ref"),
            topic=_check_name(data["topic"], "topic"),
            event=_check_name(data["event"], "event"),
            payload=data["payload"],
        )


def _contains_bytes(payload: Any) -> bool:
    if isinstance(payload, bytes | bytearray | memoryview):
        return True
    return isinstance(payload, dict) and isinstance(
        payload.get("response"), bytes | bytearray | memoryview
    )


def _status_text(status: object) -> str:
    if isinstance(status, str):
        return status
    raise EncodeError(f"reply status must be a string, got {type(status).__name__}")


def _binary(kind: int, fields: tuple[tuple[str, str], ...], payload: Any) -> bytes:
    encoded = []
    for name, value in fields:
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"unable to convert {name} to binary: {exc}") from exc
        if len(raw) > _MAX_FIELD:
            raise EncodeError(
                f"unable to convert {name} to binary: must be less than or equal to "
                f"{_MAX_FIELD} bytes, but is {len(raw)} bytes"
            )
        encoded.append(raw)
    header = struct.pack(f"{len(encoded) + 1}B", kind, *(len(raw) for raw in encoded))
    return b"".join((header, *encoded, bytes(payload)))


def _split(frame: bytes, count: int) -> tuple[list[str], bytes]:
    """Cut ``count`` size-prefixed UTF-8 fields from a binary frame; the rest is the payload."""
    if len(frame) < 1 + count:
        raise RemoteProtocolError(f"binary frame too short for its {count + 1}-byte header")
    sizes = frame[1 : 1 + count]
    offset = 1 + count
    fields = []
    for size in sizes:
        end = offset + size
        if end > len(frame):
            raise RemoteProtocolError("binary frame is shorter than its header says")
        try:
            fields.append(frame[offset:end].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"binary frame field is not UTF-8: {exc}") from exc
        offset = end
    return fields, frame[offset:]
