"""URL safety policy for downloads: which schemes and which addresses may be fetched.

Pure policy (no I/O except optional DNS lookups): a URL is refused unless its scheme is http/https and its host,
and every address the host resolves to, is a public address. Loopback, private, link-local (cloud metadata),
multicast, reserved and unspecified addresses are refused unless explicitly allowed. The urllib enforcement
that applies this where img2dataset connects (and on every redirect) is in `idia.download.opener`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import urlsplit

from idia.core.errors import UserError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")

#: Address categories a refusal can name (the index's reason is `refused_<category>`).
CATEGORIES = (
    "scheme",
    "bad_url",
    "no_host",
    "loopback",
    "private",
    "link_local",
    "multicast",
    "reserved",
    "unspecified",
)

# Private-use ranges proper (RFC 1918, shared/CGNAT RFC 6598, unique local IPv6). Python's `is_private` also
# counts documentation and benchmark ranges, which are "reserved" here: nobody legitimately serves images there.
_PRIVATE_NETS = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Hosts like 0x7f.1, 127.1 or 2130706433 that the C resolver reads as IPv4 addresses.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, Teredo client), which is what gets reached."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def classify(ip: IPAddress) -> str:
    """'public' or the category that makes an address unsafe to fetch from by default."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return classify(inner)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in n for n in _PRIVATE_NETS if n.version == ip.version):
        return "private"
    if ip.is_global:
        return "public"
    return "reserved"


def parse_networks(values: Iterable[str] | str | None) -> list[IPNetwork]:
    """CIDRs (or single addresses) from a list or a comma-separated string; UserError naming a bad one."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[IPNetwork] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise UserError(
                    f"--allow-private-network: {part!r} is not a network (expected e.g. 127.0.0.1/32)"
                ) from None
    return out


def literal_host_address(host: str) -> IPAddress | None:
    """The address a host names literally (incl. legacy numeric IPv4 forms), or None for a DNS name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class UrlGuard:
    """The download safety policy. Picklable: it travels to every download worker.

    allow_private: allow loopback and private-use addresses (local runs, the demo's loopback server).
    allowed_networks: CIDRs allowed whatever their category; when given (and allow_private is False) only
    these non-public networks are allowed, e.g. ("127.0.0.1/32",).
    """

    allow_private: bool = False
    allowed_networks: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_nets", tuple(parse_networks(list(self.allowed_networks))))

    def describe(self) -> str:
        if self.allowed_networks:
            extra = " + loopback/private" if self.allow_private else ""
            return f"public addresses + {', '.join(self.allowed_networks)}{extra}"
        return "public + loopback/private addresses" if self.allow_private else "public addresses only"

    def check_address(self, ip: IPAddress | str) -> tuple[bool, str | None]:
        """(True, None) if the address may be connected to, else (False, category)."""
        if isinstance(ip, str):
            ip = ipaddress.ip_address(ip)
        if any(ip.version == n.version and ip in n for n in self._nets):  # type: ignore[attr-defined]
            return True, None
        inner = _embedded_ipv4(ip)
        if inner is not None and any(inner in n for n in self._nets if n.version == 4):  # type: ignore[attr-defined]
            return True, None
        cat = classify(ip)
        if cat == "public":
            return True, None
        if self.allow_private and cat in ("loopback", "private"):
            return True, None
        return False, cat

    def check_host(self, host: str, resolve: bool = True, port: int | None = None) -> tuple[bool, str | None]:
        """Check a host name or literal; with resolve, every address it resolves to must pass.

        A name that cannot be resolved passes here (the connection then fails with a DNS error and is
        recorded as such); what matters is that no address it reaches is unsafe.
        """
        host = host.strip().lower().rstrip(".") if host else host
        if not host:
            return False, "no_host"
        lit = literal_host_address(host)
        if lit is not None:
            return self.check_address(lit)
        # RFC 6761: "localhost" and its subdomains are loopback whatever DNS says.
        if host == "localhost" or host.endswith(".localhost"):
            return self.check_address("127.0.0.1")
        if not resolve:
            return True, None
        try:
            addrs = resolve_host(host, port)
        except OSError:
            return True, None
        for addr in addrs:
            ok, reason = self.check_address(addr)
            if not ok:
                return ok, reason
        return True, None

    def check_url(self, url: str | None, resolve: bool = False) -> tuple[bool, str | None]:
        """(ok, reason): scheme must be http/https, and the host must pass `check_host`.

        resolve=False checks only what the URL itself says (scheme, literal addresses, localhost): fast
        enough for millions of URLs; the download workers resolve and check again at connect time.
        """
        if url is None or not str(url).strip():
            return False, "bad_url"
        if len(str(url)) > MAX_URL_LENGTH:
            return False, "url_too_long"
        if any(ord(c) < 32 or ord(c) == 127 for c in str(url).strip()):  # CR/LF/NUL: header injection, never a URL
            return False, "bad_url"
        try:
            parts = urlsplit(str(url).strip())
            host = parts.hostname
            port = parts.port
        except ValueError:
            return False, "bad_url"
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            return False, "scheme"
        if not host:
            return False, "no_host"
        return self.check_host(host, resolve=resolve, port=port)


#: Longer URLs are refused (counted as refused_url_too_long): browsers and servers stop near 8 KB, and a
#: multi-megabyte "URL" in a dataset is hostile input, not an image address.
MAX_URL_LENGTH = 8192


def resolve_host(host: str, port: int | None = None) -> list[IPAddress]:
    """Every address `host` resolves to (in resolver order, duplicates removed)."""
    infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip not in out:
            out.append(ip)
    return out


def guard_from_option(value: str | list[str] | None, allow_flag_given: bool) -> UrlGuard:
    """Build the guard from `--allow-private-network [CIDRS]`: flag alone allows all loopback/private."""
    if not allow_flag_given:
        return UrlGuard()
    nets = parse_networks(value)
    if not nets:
        return UrlGuard(allow_private=True)
    return UrlGuard(allowed_networks=tuple(str(n) for n in nets))
