"""Standard Webhooks signatures of the webhooks sent."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, field

SECRET_PREFIX = "whsec_"
# The Standard Webhooks spec asks for 24 to 64 bytes of key.
MIN_SECRET_BYTES = 24


def _decode(secret: str, position: int) -> bytes:
    """The key of one ``whsec_`` secret; never echoes the secret."""
    where = f"secret {position} of WHEEL_WEBHOOK_SECRET"
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"{where} must start with {SECRET_PREFIX}")
    text = secret[len(SECRET_PREFIX) :]
    try:
        # The package pads the same way; validate=True refuses what it
        # would silently skip (so both ends would hold different keys).
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"{where} is not valid base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{where} must hold at least {MIN_SECRET_BYTES} bytes of key"
        )
    return key


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs webhooks with one or more secrets (the first is current)."""

    # One keyed HMAC per secret, copied per message: keying costs as much
    # as hashing the short body, and it is the same for every message.
    _macs: tuple[hmac.HMAC, ...] = field(repr=False)

    @classmethod
    def from_setting(cls, value: str) -> Signer | None:
        """The signer of ``WHEEL_WEBHOOK_SECRET``; None when it is empty.

        Raises:
            ValueError: naming the position (from 1) of a bad secret.
        """
        secrets = value.split()
        if not secrets:
            return None
        keys = [_decode(s, n) for n, s in enumerate(secrets, start=1)]
        return cls(
            tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)
        )

    def headers(
        self, msg_id: str, body: bytes, now_s: int | None = None
    ) -> dict[str, str]:
        """The ``webhook-id``, ``-timestamp`` and ``-signature`` headers."""
        timestamp = str(int(time.time()) if now_s is None else now_s)
        signed = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body)
        signatures = []
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(signed)
            signatures.append("v1," + base64.b64encode(mac.digest()).decode())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": " ".join(signatures),
        }
