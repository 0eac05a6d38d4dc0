"""The SSRF guard: which addresses a webhook may be sent to."""

from __future__ import annotations

import socket
import string
import unicodedata
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from urllib.parse import unquote

from aiohttp import DefaultResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
_Row = tuple[int, int, str]

# What each range is, as the end of "<address> is ...". The first match
# wins, so a specific address comes before the range holding it.
_V4_RANGES = (
    ("169.254.169.254/32", "the cloud metadata address (link-local)"),
    ("169.254.0.0/16", "a link-local address"),
    ("100.100.100.200/32", "the Alibaba Cloud metadata address"),
    ("100.64.0.0/10", "a shared (CGNAT) address, RFC 6598"),
    ("168.63.129.16/32", "the Azure platform (WireServer) address"),
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", 'a "this network" address'),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890)"),
    ("192.0.2.0/24", "a documentation address (RFC 5737)"),
    ("198.51.100.0/24", "a documentation address (RFC 5737)"),
    ("203.0.113.0/24", "a documentation address (RFC 5737)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("192.88.99.0/24", "a deprecated 6to4 relay address (RFC 7526)"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address (240.0.0.0/4)"),
)
_V6_RANGES = (
    ("fd00:ec2::254/128", "the AWS metadata address (unique-local)"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
    ("100::/64", "a discard-only address (RFC 6666)"),
    ("2001:2::/48", "a benchmarking address (RFC 5180)"),
    ("2001:10::/28", "an ORCHID identifier (not routable)"),
    ("2001:20::/28", "an ORCHID identifier (not routable)"),
    ("2001:db8::/32", "a documentation address (RFC 3849)"),
    ("3fff::/20", "a documentation address (RFC 9637)"),
    # Only 2000::/3 is allocated for global unicast; the rest is reserved
    # and unrouted (5f00::/16 SRv6 SIDs included).
    ("::/0", "outside the global unicast space 2000::/3"),
)


def _table(rows: tuple[tuple[str, str], ...]) -> tuple[_Row, ...]:
    # Integer bounds: an address is judged with two comparisons a row.
    nets = [(ip_network(cidr), what) for cidr, what in rows]
    return tuple((int(n[0]), int(n[-1]), what) for n, what in nets)


_V4_TABLE = _table(_V4_RANGES)
_V6_TABLE = _table(_V6_RANGES)
_V6_GLOBAL_TABLE = _V6_TABLE[:-1]
_GLOBAL_V6 = ip_network("2000::/3")

_NAT64 = ip_network("64:ff9b::/96")
_COMPAT = ip_network("::/96")
_TRANSLATED = ip_network("::ffff:0:0:0/96")  # SIIT, RFC 2765

_HEX = frozenset(string.hexdigits)
_OCT = frozenset(string.octdigits)
_DEC = frozenset(string.digits)
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_.")


# The name is part of the documented API, hence no "Error" suffix.
class TargetRefused(OSError):
    """Every address a host resolved to is refused by the policy.

    An ``OSError``, so that aiohttp reports it as a connector error.
    """

    def __init__(self, host: str, reasons: list[str]) -> None:
        self.host = host
        self.reasons = reasons
        super().__init__(f"{'; '.join(reasons)} (host {host})")


def _embedded_v4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 form carries, with the form's name."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _TRANSLATED:
        return "IPv4-translated", IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _COMPAT and int(ip) > 1:
        return "IPv4-compatible", IPv4Address(int(ip))
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        # The client is where the relay delivers; the server is public.
        return "Teredo", ip.teredo[1]
    return None


def _category(ip: Address) -> str | None:
    value = int(ip)
    if ip.version == 4:
        table = _V4_TABLE
    else:
        # Global unicast, the common case, skips the catch-all last row.
        table = _V6_GLOBAL_TABLE if ip in _GLOBAL_V6 else _V6_TABLE
    for low, high, what in table:
        if low <= value <= high:
            return what
    return None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which webhook targets are refused: private, local and special ones.

    ``guarded`` False is the guard off. ``allowed_networks`` and
    ``allowed_hosts`` are allowed although private.
    """

    guarded: bool = True
    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def build(cls, allow_private: bool, allowed: str) -> TargetPolicy:
        """The policy of ``WHEEL_ALLOW_PRIVATE_TARGETS`` and
        ``WHEEL_ALLOWED_TARGETS``.

        Args:
            allow_private: True turns the guard off.
            allowed: comma-separated CIDRs (IPv4 or IPv6) or host names.

        Raises:
            ValueError: naming the first entry that is neither.
        """
        networks: list[Network] = []
        hosts: set[str] = set()
        for raw in allowed.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if _looks_numeric(entry):
                try:
                    networks.append(ip_network(entry))
                except ValueError as exc:
                    raise ValueError(
                        f"allowed target {entry!r} is not a CIDR ({exc})"
                    ) from None
                continue
            name = entry.lower().rstrip(".")
            if not _is_host_name(name):
                raise ValueError(
                    f"allowed target {entry!r} is neither a CIDR nor an "
                    "ASCII host name"
                )
            hosts.add(name)
        return cls(not allow_private, tuple(networks), frozenset(hosts))

    @classmethod
    def open(cls) -> TargetPolicy:
        """The guard off: every address may be a target."""
        return cls(guarded=False)

    def host_allowed(self, host: str) -> bool:
        """Whether the host name ``host`` is on the allowed list."""
        return host.lower().rstrip(".") in self.allowed_hosts

    def address_refusal(self, ip: Address) -> str | None:
        """Why ``ip`` may not be a webhook target, or None when it may."""
        if not self.guarded or self._allowed(ip):
            return None
        if ip.version == 6:
            embedded = _embedded_v4(ip)
            if embedded is not None:
                form, inner = embedded
                if self._allowed(inner):
                    return None
                what = _category(inner)
                if what is not None:
                    return f"{ip} ({form} form of {inner}) is {what}"
                return None
        what = _category(ip)
        return None if what is None else f"{ip} is {what}"

    def host_refusal(self, host: str) -> str | None:
        """Why a URL's ``host`` may not be a target: a refused literal.

        None for host names: they are judged when they are resolved.
        """
        if not self.guarded:
            return None
        ip = parse_host_literal(host)
        return None if ip is None else self.address_refusal(ip)

    def url_refusal(self, url: str) -> str | None:
        """Why ``url`` may not be a target, judged without DNS.

        Refuses credentials and literal addresses the policy forbids;
        host names pass here and are checked when connecting.
        """
        try:
            target = URL(url)
        except ValueError as exc:
            return f"cannot be parsed ({exc})"
        host = target.raw_host or ""
        named = f"[{host}]" if ":" in host else host
        if has_credentials(url, target):
            return f"must not carry credentials (host {named})"
        reason = self.host_refusal(host)
        return None if reason is None else f"{reason} (host {named})"

    def _allowed(self, ip: Address) -> bool:
        return any(
            net.version == ip.version and ip in net
            for net in self.allowed_networks
        )


def has_credentials(url: str, target: URL) -> bool:
    """Whether ``url`` (parsed as ``target``) names a user or password."""
    if target.raw_user is not None or target.raw_password is not None:
        return True
    # yarl drops an empty "@", which still hides the host from a reader.
    authority = url.partition("://")[2]
    for sep in "/?#\\":
        authority = authority.partition(sep)[0]
    return "@" in authority


def _looks_numeric(entry: str) -> bool:
    """Whether an allowed-list entry is meant as an address or CIDR."""
    head = entry.partition("/")[0]
    return "/" in entry or ":" in head or parse_host_literal(head) is not None


def _is_host_name(name: str) -> bool:
    if not name or len(name) > 253 or not set(name) <= _HOST_CHARS:
        return False
    labels = name.split(".")
    return all(0 < len(label) <= 63 for label in labels)


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 host, as WHATWG URL and inet_aton read it."""
    if part[:2] in ("0x", "0X"):
        digits, base, allowed = part[2:], 16, _HEX
        if not digits:
            return 0
    elif len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, _OCT
    else:
        digits, base, allowed = part, 10, _DEC
    # int() alone would take "+1", " 1" and "1_0".
    if not digits or not set(digits) <= allowed:
        return None
    return int(digits, base)


def _parse_ipv4(text: str) -> IPv4Address | None:
    parts = text.split(".")
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def parse_host_literal(host: str) -> Address | None:
    """The address a URL host literally denotes; None for a host name.

    Reads every spelling a browser (WHATWG URL) or libc accepts:
    ``127.1``, ``2130706433``, ``0x7f.1``, ``017700000001``, trailing
    dots, percent-encoding, full-width digits and bracketed IPv6.
    """
    text = host
    if "%" in text and not text.startswith("["):
        text = unquote(text)
    if not text.isascii():
        # Close to the UTS 46 mapping: full-width digits and dots.
        text = unicodedata.normalize("NFKC", text).replace("\u3002", ".")
    if text.startswith("[") and text.endswith("]"):
        text = unquote(text[1:-1])
    if ":" in text:
        try:
            return IPv6Address(text)
        except ValueError:
            return None
    text = text.rstrip(".")
    if not text:
        return None
    # A host whose last label is not a number is a name (WHATWG's
    # "ends in a number"): skips the parse for nearly every real host.
    last = text.rpartition(".")[2]
    if _ipv4_number(last) is None and not last.isdigit():
        return None
    return _parse_ipv4(text)


def _resolved_address(host: str) -> Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, dropping the addresses the policy refuses.

    The addresses judged are the ones aiohttp connects to, so a name that
    resolves differently at create time and at send time (DNS rebinding)
    gains nothing.
    """

    def __init__(
        self, policy: TargetPolicy, inner: AbstractResolver | None = None
    ) -> None:
        self.policy = policy
        self._inner = DefaultResolver() if inner is None else inner

    async def resolve(
        self,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> list[ResolveResult]:
        """The allowed addresses of ``host``.

        Raises:
            TargetRefused: when none is left, naming each refused one.
        """
        results = await self._inner.resolve(host, port, family)
        if self.policy.host_allowed(host):
            return results
        kept: list[ResolveResult] = []
        reasons: list[str] = []
        for result in results:
            ip = _resolved_address(result["host"])
            reason = (
                f"{result['host']} is not an IP address"
                if ip is None
                else self.policy.address_refusal(ip)
            )
            if reason is None:
                kept.append(result)
            elif reason not in reasons:
                reasons.append(reason)
        if not kept and reasons:
            raise TargetRefused(host, reasons)
        return kept

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()
