"""A timer's own request: the rules (naming every bad part) and the
packed form kept in Redis. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from wheel.core.webhook_request import (
    MAX_BODY_BYTES,
    MAX_HEADERS,
    RequestInvalid,
    WebhookRequest,
    normalized,
    pack,
    parse_request,
    unpack,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, WebhookRequest()),
        ({"method": "PUT"}, WebhookRequest("PUT")),
        ({"method": "GET"}, WebhookRequest("GET")),
        ({"method": "DELETE"}, WebhookRequest("DELETE")),
        (
            {"headers": {"Authorization": "Bearer x", "X-Tenant": "a b"}},
            WebhookRequest(
                headers=(("Authorization", "Bearer x"), ("X-Tenant", "a b"))
            ),
        ),
        ({"body": ""}, WebhookRequest(body="")),
        (
            {"method": "PATCH", "body": "caf\u00e9 \u2603\n"},
            WebhookRequest("PATCH", body="caf\u00e9 \u2603\n"),
        ),
        ({"body": "x" * MAX_BODY_BYTES}, WebhookRequest(body="x" * 32768)),
        (
            {"headers": {"Content-Type": "text/plain"}},
            WebhookRequest(headers=(("Content-Type", "text/plain"),)),
        ),
    ],
)
def test_good_requests(
    value: dict[str, Any], expected: WebhookRequest
) -> None:
    """Each part replaces its default; the rest stay."""
    assert parse_request(value) == expected


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        ([], "request", "object"),
        ("PUT", "request", "object"),
        ({"method": "OPTIONS"}, "request.method", "one of"),
        ({"method": "put"}, "request.method", "one of"),
        ({"method": 1}, "request.method", "one of"),
        ({"verb": "PUT"}, "request.verb", "not a known field"),
        ({"headers": []}, "request.headers", "object"),
        ({"headers": {"Bad Name": "x"}}, "request.headers.Bad Name", "token"),
        ({"headers": {"": "x"}}, "request.headers.", "token"),
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "request.headers.X-A", "contr"),
        ({"headers": {"X-A": "tab\there"}}, "request.headers.X-A", "control"),
        ({"headers": {"X-A": "nel\u0085"}}, "request.headers.X-A", "control"),
        ({"headers": {"X-A": 1}}, "request.headers.X-A", "string"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "request.headers.x-a", "tw"),
        (
            {"headers": {f"X-{i}": "v" for i in range(MAX_HEADERS + 1)}},
            "request.headers",
            f"at most {MAX_HEADERS}",
        ),
        ({"headers": {"X-A": "v" * 9000}}, "request.headers", "bytes"),
        ({"body": 5}, "request.body", "string"),
        ({"body": {"a": 1}}, "request.body", "string"),
        ({"body": "x" * (MAX_BODY_BYTES + 1)}, "request.body", "32768"),
        ({"body": "\u00e9" * (MAX_BODY_BYTES // 2 + 1)}, "request.body", "UT"),
        ({"method": "GET", "body": "x"}, "request.body", "GET"),
        ({"method": "DELETE", "body": ""}, "request.body", "DELETE"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_part(
    value: object, field: str, words: str
) -> None:
    """A bad part is refused with its dotted path and why."""
    with pytest.raises(RequestInvalid) as raised:
        parse_request(value)
    fields = dict(raised.value.errors)
    assert field in fields, raised.value.errors
    assert words in fields[field]


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Idempotency-Key",
        "User-Agent",
        "Webhook-Signature",
        "webhook-id",
        "webhook-timestamp",
        "Upgrade",
        "TE",
        "Keep-Alive",
        "Trailer",
        "Proxy-Authorization",
        "Expect",
    ],
)
def test_headers_the_service_sets_are_refused(name: str) -> None:
    """The service's own and hop-by-hop headers: 422 naming each."""
    with pytest.raises(RequestInvalid) as raised:
        parse_request({"headers": {name: "x"}})
    ((field, message),) = raised.value.errors
    assert field == f"request.headers.{name}"
    assert "set by the service" in message


def test_every_bad_part_is_named() -> None:
    """Three bad parts: three errors."""
    with pytest.raises(RequestInvalid) as raised:
        parse_request({"method": "TRACE", "headers": {"Host": "h"}, "body": 1})
    assert [f for f, _ in raised.value.errors] == [
        "request.method",
        "request.headers.Host",
        "request.body",
    ]


@pytest.mark.parametrize(
    "request_",
    [
        WebhookRequest(),
        WebhookRequest("GET"),
        WebhookRequest("PUT", (("A", "1"), ("B", "\u00e9")), "x\ny"),
        WebhookRequest(body=""),
    ],
)
def test_packed_form_round_trips(request_: WebhookRequest) -> None:
    """What pack makes, unpack reads back."""
    assert unpack(pack(request_)) == request_


def test_packed_form_is_compact() -> None:
    """The packed form is a few bytes beyond what was given."""
    request = WebhookRequest("PUT", (("Authorization", "Bearer x"),), "hi")
    assert len(pack(request)) <= len("PUTAuthorizationBearer xhi") + 8


def test_unpack_refuses_garbage() -> None:
    """Bytes that are no packed request are an error, not a crash."""
    with pytest.raises(ValueError, match="packed request"):
        unpack(b"\xff\x00")


def test_the_default_request_is_stored_as_none() -> None:
    """An empty request object is the default webhook: nothing stored."""
    assert normalized(parse_request({})) is None
    assert normalized(parse_request({"method": "POST"})) is None
    assert normalized(None) is None
    assert normalized(WebhookRequest("PUT")) == WebhookRequest("PUT")


@pytest.mark.parametrize(
    ("request_", "sent"),
    [
        (WebhookRequest(), b"D"),
        (WebhookRequest("PUT"), b"D"),
        (WebhookRequest("GET"), None),
        (WebhookRequest("DELETE"), None),
        (WebhookRequest(body="b"), b"b"),
        (WebhookRequest("PATCH", body=""), b""),
    ],
)
def test_body_sent(request_: WebhookRequest, sent: bytes | None) -> None:
    """The body as sent: given, the default, or none for GET and DELETE."""
    assert request_.body_bytes(b"D") == sent
