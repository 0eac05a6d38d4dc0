"""The SSRF guard's pure answers: no connection is ever made here."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from wheel.webhooks.guard import (
    GuardedResolver,
    TargetPolicy,
    TargetRefused,
    parse_host_literal,
)

GUARD = TargetPolicy.build(False, "")

SPELLINGS = [
    # IPv4 in every form inet_aton and WHATWG URL parsing accept.
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.0.0.01", "127.0.0.1"),
    ("127.000.000.001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("127.0.0.1..", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("10.1", "10.0.0.1"),
    ("1.65536", "1.1.0.0"),
    # Percent-encoding and full-width forms a URL parser may decode.
    ("127%2e0.0.1", "127.0.0.1"),
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),
    ("127\u30020\u30020\u30021", "127.0.0.1"),
    ("127\uff0e0\uff0e0\uff0e1", "127.0.0.1"),
    # IPv6, bracketed as in a URL or bare as yarl hands it over.
    ("[::1]", "::1"),
    ("::1", "::1"),
    ("[::]", "::"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("[FD00:EC2::254]", "fd00:ec2::254"),
]

NOT_LITERALS = [
    "localhost",
    "example.com",
    "hooks.internal",
    "127.0.0.1.nip.io",
    "0x7f.example",
    "1.2.3.4.5",
    "256.0.0.1",
    "127.0.0.256",
    "1.16777216",
    "09.0.0.1",
    "0x1g.0.0.1",
    "127..0.1",
    "+127.0.0.1",
    "1_27.0.0.1",
    "",
    ".",
    "[::ffff:127.1]",
    "[not-an-address]",
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_host_literal_spellings(host: str, address: str) -> None:
    """Each spelling of an address is read as that address."""
    assert parse_host_literal(host) == ip_address(address)


@pytest.mark.parametrize("host", NOT_LITERALS)
def test_host_names_are_not_literals(host: str) -> None:
    """A host name, or a number no parser accepts, is no literal."""
    assert parse_host_literal(host) is None


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("172.31.255.255", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("169.254.169.254", "metadata"),
    ("169.254.169.123", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "Azure"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fec0::1", "site-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "this network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.8", "IETF protocol"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("2001:2::1", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("100::1", "discard-only"),
    ("2001:10::1", "ORCHID"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("5f00::1", "global unicast"),
    ("4000::1", "global unicast"),
    # IPv6 forms judged by the IPv4 address they carry.
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1) is a loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1"),
    ("::ffff:0:127.0.0.1", "IPv4-translated form of 127.0.0.1"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
    ("::10.0.0.1", "IPv4-compatible form of 10.0.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of 169.254.169.254"),
    ("2002:7f00:1::", "6to4 form of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo form of 127.0.0.1"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "169.255.0.1",
    "11.0.0.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_special_addresses_are_refused(address: str, why: str) -> None:
    """Every non-public address is refused, its reason naming it."""
    ip = ip_address(address)
    reason = GUARD.address_refusal(ip)
    assert reason is not None
    assert reason.startswith(str(ip))
    assert why in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    """A public address (or a form of one) may be a target."""
    assert GUARD.address_refusal(ip_address(address)) is None


@pytest.mark.parametrize(("address", "_why"), REFUSED)
def test_guard_off_refuses_no_address(address: str, _why: str) -> None:
    """With the guard off every address is allowed."""
    assert TargetPolicy.open().address_refusal(ip_address(address)) is None
    off = TargetPolicy.build(True, "")
    assert off.address_refusal(ip_address(address)) is None


ALLOWED = [
    ("127.0.0.0/8", "127.0.0.1", True),
    ("127.0.0.0/8", "::ffff:127.0.0.1", True),
    ("127.0.0.0/8", "::1", False),
    ("127.0.0.0/8", "10.0.0.1", False),
    ("10.0.0.0/8, 192.168.1.0/24", "192.168.1.7", True),
    ("10.0.0.0/8, 192.168.1.0/24", "192.168.2.7", False),
    (" 10.1.2.3 ", "10.1.2.3", True),
    (" 10.1.2.3 ", "10.1.2.4", False),
    ("::1/128", "::1", True),
    ("fd00::/8", "fd00:ec2::254", True),
    ("fd00::/8", "fc00::1", False),
    ("169.254.169.254/32", "169.254.169.254", True),
    ("hooks.internal", "10.0.0.1", False),
]


@pytest.mark.parametrize(("allowed", "address", "passes"), ALLOWED)
def test_allowed_networks_override(
    allowed: str, address: str, passes: bool
) -> None:
    """An address inside an allowed CIDR passes; others stay refused."""
    policy = TargetPolicy.build(False, allowed)
    refusal = policy.address_refusal(ip_address(address))
    assert (refusal is None) is passes


def test_allowed_list_parses_names_and_networks() -> None:
    """Entries are split on commas, trimmed, and names lower-cased."""
    policy = TargetPolicy.build(
        False, " 10.0.0.0/8 ,Hooks.Internal., ,fd00::/8,localhost,"
    )
    assert [str(n) for n in policy.allowed_networks] == [
        "10.0.0.0/8",
        "fd00::/8",
    ]
    assert policy.allowed_hosts == {"hooks.internal", "localhost"}
    assert policy.host_allowed("HOOKS.internal.")
    assert not policy.host_allowed("evil.hooks.internal")


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.1/8",
        "10.0.0.0/33",
        "127.1",
        "http://hooks.internal",
        "hooks.internal:8080",
        "hooks internal",
        "bad..name",
        "caf\u00e9.example",
        "::1/129",
    ],
)
def test_bad_allowed_entry_is_named(entry: str) -> None:
    """A bad entry of the allowed list is refused, naming the entry."""
    with pytest.raises(ValueError, match="allowed target") as caught:
        TargetPolicy.build(False, f"10.0.0.0/8,{entry}")
    assert repr(entry) in str(caught.value)


URL_REFUSED = [
    ("http://127.0.0.1/hook", "(host 127.0.0.1)"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("https://2130706433/", "(host 2130706433)"),
    ("http://0x7f.1/", "(host 0x7f.1)"),
    ("http://017700000001/", "127.0.0.1 is a loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://[::1]:8080/", "(host [::1])"),
    ("http://[::]/", "unspecified"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://10.0.0.1/", "RFC 1918"),
    ("http://0/", "unspecified"),
    ("http://\uff11\uff12\uff17.0.0.1/", "loopback"),
    ("http://user:pass@example.com/", "credentials (host example.com)"),
    ("http://user@example.com/", "credentials"),
    ("http://:pass@example.com/", "credentials"),
    ("http://@example.com/", "credentials"),
    ("http://example.com@127.0.0.1/", "credentials"),
    ("http://evil.com\\@127.0.0.1/", "cannot be parsed"),
]


@pytest.mark.parametrize(("url", "why"), URL_REFUSED)
def test_url_refusals(url: str, why: str) -> None:
    """Credentials and forbidden literal hosts are refused at create."""
    reason = GUARD.url_refusal(url)
    assert reason is not None
    assert why in reason


URL_PASSES = [
    "http://localhost/hook",
    "http://localhost:8080/hook",
    "http://app.localhost/hook",
    "https://example.com/hook?x=1#y",
    "https://EXAMPLE.com:8443/",
    "http://8.8.8.8/",
    "http://[2606:4700:4700::1111]/",
    "http://metadata.google.internal/",
    "http://example.com/a@b",
    "http://example.com/?next=user@host",
]


@pytest.mark.parametrize("url", URL_PASSES)
def test_url_passes(url: str) -> None:
    """Host names and public literals pass at create (names: at connect)."""
    assert GUARD.url_refusal(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://0x7f.1/",
    ],
)
def test_url_guard_off_or_allowed(url: str) -> None:
    """The guard off, or an allowed CIDR, lets a private literal pass."""
    assert TargetPolicy.open().url_refusal(url) is None
    allowed = TargetPolicy.build(False, "127.0.0.0/8,::1/128,169.254.0.0/16")
    assert allowed.url_refusal(url) is None


def test_credentials_are_refused_with_the_guard_off() -> None:
    """Credentials in a URL are refused whatever the policy."""
    reason = TargetPolicy.open().url_refusal("http://u:p@127.0.0.1/")
    assert reason is not None
    assert "credentials" in reason


class FixedResolver(AbstractResolver):
    """Answers every name with fixed addresses; no DNS, no connection."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> list[ResolveResult]:
        """The fixed addresses, as aiohttp's resolvers shape them."""
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


async def test_resolver_drops_refused_addresses() -> None:
    """A name resolving to public and private addresses keeps the public."""
    inner = FixedResolver(["127.0.0.1", "93.184.216.34", "10.0.0.1"])
    resolver = GuardedResolver(GUARD, inner)
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_resolver_refuses_when_nothing_is_left() -> None:
    """Only refused addresses: TargetRefused names host and each reason."""
    inner = FixedResolver(["127.0.0.1", "::1", "169.254.169.254"])
    resolver = GuardedResolver(GUARD, inner)
    with pytest.raises(TargetRefused) as caught:
        await resolver.resolve("rebound.example", 80)
    message = str(caught.value)
    assert isinstance(caught.value, OSError)
    assert "127.0.0.1 is a loopback address" in message
    assert "::1 is a loopback address" in message
    assert "169.254.169.254 is the cloud metadata address" in message
    assert message.endswith("(host rebound.example)")


async def test_resolver_lets_allowed_hosts_and_networks_through() -> None:
    """An allowed name keeps every address; an allowed CIDR its own."""
    inner = FixedResolver(["10.0.0.7", "127.0.0.1"])
    policy = TargetPolicy.build(False, "hooks.internal,127.0.0.0/8")
    resolver = GuardedResolver(policy, inner)
    every = await resolver.resolve("Hooks.Internal.", 80)
    assert [r["host"] for r in every] == ["10.0.0.7", "127.0.0.1"]
    other = await resolver.resolve("other.example", 80)
    assert [r["host"] for r in other] == ["127.0.0.1"]


def test_literal_types() -> None:
    """A literal is returned as the ipaddress type of its family."""
    assert isinstance(parse_host_literal("127.1"), IPv4Address)
    assert isinstance(parse_host_literal("[::1]"), IPv6Address)
