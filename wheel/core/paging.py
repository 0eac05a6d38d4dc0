"""Opaque cursors of paged listings: ``{"items", "next_cursor"}``.

A cursor is the state a listing needs to go on (a msgspec Struct of the
listing's own), stamped with the listing it belongs to (a fingerprint of
its parameters: what is listed, the filters, the deployment's shape) and
a version, as MessagePack in URL-safe base64. It is opaque to clients,
not secret: a forged one can only point a listing at another place of
the same walk, which bounds its work the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TypeVar

import msgspec

VERSION = 1
MAX_CURSOR_CHARS = 16384

S = TypeVar("S", bound=msgspec.Struct)


class CursorInvalid(ValueError):
    """A cursor that is not one of this listing's (malformed, from
    another listing, or from another version)."""


class CursorStale(Exception):
    """The data moved under a cursor so that the listing cannot go on
    and keep its promise; the client starts the listing again."""


def fingerprint(*parts: object) -> bytes:
    """What identifies a listing: a digest of its parameters."""
    text = "\0".join(repr(part) for part in parts)
    return hashlib.sha256(text.encode()).digest()[:8]


class _Envelope(msgspec.Struct, array_like=True):
    version: int
    listing: bytes
    state: msgspec.Raw


_encode = msgspec.msgpack.Encoder().encode
_envelope = msgspec.msgpack.Decoder(_Envelope).decode


def encode(listing: bytes, state: msgspec.Struct) -> str:
    """The cursor text of ``state`` for the listing ``listing``."""
    raw = _encode(_Envelope(VERSION, listing, msgspec.Raw(_encode(state))))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(text: str, listing: bytes, kind: type[S]) -> S:
    """The state a cursor of ``listing`` holds.

    Raises:
        CursorInvalid: saying whether it is malformed or another's.
    """
    if len(text) > MAX_CURSOR_CHARS or not text.isascii():
        raise CursorInvalid("is not a cursor this API gave")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        envelope = _envelope(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise CursorInvalid("is not a cursor this API gave") from None
    if envelope.version != VERSION:
        raise CursorInvalid("is from another version; start again")
    if envelope.listing != listing:
        raise CursorInvalid(
            "belongs to another listing (other status or filters); use "
            "it with the parameters it was given with, or start again"
        )
    try:
        return msgspec.msgpack.decode(envelope.state, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise CursorInvalid("is not a cursor this API gave") from None
