"""Standard Webhooks signatures, checked by the standardwebhooks package."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from wheel.webhooks.sender import Webhook as Body
from wheel.webhooks.signing import Signer

CURRENT = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PREVIOUS = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TIMER_ID = "0b7c5f5e-2b1e-4a8e-9d36-2f0c8a1b9e11"
BODY = msgspec.json.encode(Body(TIMER_ID))


def signer(value: str) -> Signer:
    """A signer that must exist for ``value``."""
    built = Signer.from_setting(value)
    assert built is not None
    return built


def test_signature_verifies() -> None:
    """A receiver holding the secret verifies the webhook."""
    headers = signer(CURRENT).headers(TIMER_ID, BODY)
    assert Webhook(CURRENT).verify(BODY, headers) == {"id": TIMER_ID}
    assert headers["webhook-id"] == TIMER_ID
    assert headers["webhook-timestamp"].isdigit()


@pytest.mark.parametrize("known", [CURRENT, PREVIOUS])
def test_either_of_two_secrets_verifies(known: str) -> None:
    """With two secrets, a receiver knowing only one of them verifies."""
    headers = signer(f"{CURRENT} {PREVIOUS}").headers(TIMER_ID, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(known).verify(BODY, headers)


def test_signatures_follow_the_order_of_the_secrets() -> None:
    """One v1 signature per secret, in the order the setting gives."""
    now_s = int(time.time())
    both = signer(f"{CURRENT}  {PREVIOUS}").headers(TIMER_ID, BODY, now_s)
    first = signer(CURRENT).headers(TIMER_ID, BODY, now_s)
    second = signer(PREVIOUS).headers(TIMER_ID, BODY, now_s)
    assert both["webhook-signature"] == (
        f"{first['webhook-signature']} {second['webhook-signature']}"
    )


@pytest.mark.parametrize("now_s", [0, 1, 1_700_000_000, 4_102_444_800])
@pytest.mark.parametrize("secret", [CURRENT, PREVIOUS])
def test_equal_to_the_package_sign(secret: str, now_s: int) -> None:
    """The fast signature is byte for byte the package's own."""
    mine = signer(secret).headers(TIMER_ID, BODY, now_s)
    theirs = Webhook(secret).sign(
        TIMER_ID, datetime.fromtimestamp(now_s, tz=UTC), BODY.decode()
    )
    assert mine["webhook-signature"] == theirs
    assert mine["webhook-timestamp"] == str(now_s)


def test_webhook_id_is_stable_across_sends() -> None:
    """Two sends of one timer carry the same webhook-id."""
    sign = signer(CURRENT)
    first = sign.headers(TIMER_ID, BODY, 1_700_000_000)
    again = sign.headers(TIMER_ID, BODY, 1_700_000_060)
    assert first["webhook-id"] == again["webhook-id"] == TIMER_ID
    assert first["webhook-signature"] != again["webhook-signature"]


def test_tampered_body_fails() -> None:
    """A body changed on the way fails verification."""
    headers = signer(CURRENT).headers(TIMER_ID, BODY)
    tampered = BODY.replace(TIMER_ID[:8].encode(), b"ffffffff")
    with pytest.raises(WebhookVerificationError):
        Webhook(CURRENT).verify(tampered, headers)


def test_wrong_secret_fails() -> None:
    """A receiver with another secret refuses the webhook."""
    headers = signer(CURRENT).headers(TIMER_ID, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(PREVIOUS).verify(BODY, headers)


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_setting_means_no_signer(value: str) -> None:
    """No secret, no signing."""
    assert Signer.from_setting(value) is None


@pytest.mark.parametrize(
    ("value", "position", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1, "whsec_"),
        (f"{CURRENT} whsec_not*base64!!", 2, "base64"),
        (f"{CURRENT} whsec_MfKQ9r8G-YqrTwjUPD8ILPZIo2LaLaSw", 2, "base64"),
        (f"{CURRENT} {PREVIOUS} whsec_", 3, "at least 24 bytes"),
        ("whsec_c2hvcnQ=", 1, "at least 24 bytes"),
    ],
)
def test_malformed_secret_named_by_position(
    value: str, position: int, why: str
) -> None:
    """A bad secret is refused by position, never echoed."""
    with pytest.raises(ValueError, match=why) as caught:
        Signer.from_setting(value)
    message = str(caught.value)
    assert f"secret {position} of WHEEL_WEBHOOK_SECRET" in message
    for secret in value.split():
        key = secret.removeprefix("whsec_")
        assert not key or key not in message


def test_signer_repr_hides_keys() -> None:
    """A logged signer shows no key material."""
    text = repr(signer(CURRENT))
    assert CURRENT.removeprefix("whsec_") not in text
