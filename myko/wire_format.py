"""Protobuf wire-format pieces written by hand, where concatenating stored bytes
beats building and serialising messages (query results, repo snapshots).

Only what those callers need: varints, and the bytes that go before an
embedded `google.protobuf.Any` whose `value` is already encoded.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((i,)) for i in range(0x80)]  # varints below 128 (most lengths)
_ANY_TYPE_URL_TAG = b"\x0a"  # Any.type_url = 1
_ANY_VALUE_TAG = b"\x12"  # Any.value = 2


def varint(n: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    if n < 0x80:
        return _ONE_BYTE[n]
    # Lengths and offsets are mostly below 2**21: written without a loop.
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload


def any_field_prefix(tag: bytes, type_url: str, value_len: int) -> bytes:
    """What precedes an Any's `value` bytes (of `value_len`) when the Any is the field `tag`:
    the field's length, the type_url, and the value's own tag and length. An empty
    value is not written at all (proto3), so then this is the whole field."""
    url = type_url.encode()
    head = _ANY_TYPE_URL_TAG + varint(len(url)) + url
    if value_len:
        head += _ANY_VALUE_TAG + varint(value_len)
    return tag + varint(len(head) + value_len) + head
