"""Webhook URLs are untrusted input: which ones batchq may POST to, and at which address.

A target passes when its scheme is http or https and EVERY address its host resolves to is public: not
private, loopback, link-local, site-local, multicast, reserved, unspecified, or one of the special ranges below
(checked after unwrapping IPv4-mapped and 6to4/NAT64 forms), unless the operator allows private targets
(``BATCHQ_WEBHOOK_ALLOW_PRIVATE``). The caller connects to the address checked here, never to a second lookup
of the name (DNS rebinding).

A refused name gets one message whatever the reason (no answer, a private answer): the message goes back to the
tenant, who must not learn which internal names exist or what they resolve to. The details go to the log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

#: Longest accepted URL.
MAX_URL_CHARS = 2048
#: Ranges Python's flags miss (OWASP SSRF cheat sheet; saleor/requests-hardened's deny-list; IANA's IPv6
#: special-purpose registry): shared address space (CGNAT), IETF protocol assignments, 6to4 relay anycast,
#: benchmarking; NAT64 (and local-use NAT64), 6to4, ORCHIDv2, documentation, SRv6 SIDs, site-local (deprecated,
#: still routed by some networks), the dummy prefix (RFC 9780), Teredo (it embeds an IPv4 address). Listed even
#: where 3.11's flags catch them, since later CPython releases narrowed ``is_private``.
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15",
        "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001:20::/28", "3fff::/20", "5f00::/16",
        "fec0::/10", "100:0:0:1::/64", "2001::/32", "2001:2::/48", "2001:db8::/32",
    )
)  # fmt: skip
#: What a tenant is told about a name that is refused, whatever the reason.
UNREACHABLE_NAME = (
    "The url's host does not resolve to an address webhooks may reach; webhooks may only reach public addresses "
    "(the operator can allow others with BATCHQ_WEBHOOK_ALLOW_PRIVATE)."
)


class WebhookTargetError(ValueError):
    """The URL is malformed, not http(s), does not resolve, or reaches an address that is not allowed."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to call the host (Host header, TLS SNI and certificate)."""

    scheme: str
    host: str
    """The host as written (lowercase, IPv6 without brackets)."""
    port: int
    path: str
    """Path and query, at least ``/``."""
    address: str
    """The checked address to connect to."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host."""
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{addr}:{self.port}{self.path}"


def is_public(address: IPAddress) -> bool:
    """Whether an address is a public unicast one a webhook may reach."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        return False
    return not any(address in net for net in DENIED_NETWORKS if net.version == address.version)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_url(url: object) -> SplitResult:
    """Syntax checks only (used at create time before resolving)."""
    if not isinstance(url, str) or not url:
        raise WebhookTargetError("The url must be a non-empty string.")
    if len(url) > MAX_URL_CHARS:
        raise WebhookTargetError(f"The url is longer than {MAX_URL_CHARS} characters.")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise WebhookTargetError("The url contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise WebhookTargetError(f"The url is malformed: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookTargetError("The url must start with http:// or https://.")
    if not parts.hostname:
        raise WebhookTargetError("The url has no host.")
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetError("The url must not contain credentials.")
    if parts.fragment:
        raise WebhookTargetError("The url must not contain a fragment.")
    return parts


def resolve_target(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Check ``url`` and pick the address to connect to.

    Raises:
        WebhookTargetError: the URL is refused; the message says why (it is shown to the API caller).
    """
    parts = parse_url(url)
    try:  # an IDN host goes on the wire (Host, SNI) in its ASCII form
        host = (parts.hostname or "").lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise WebhookTargetError("The url's host is not a valid host name.") from None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
        if not allow_private and not is_public(literal):
            raise WebhookTargetError(
                f"The url's address {literal} is private, loopback, link-local or reserved; webhooks may only reach "
                "public addresses (the operator can allow others with BATCHQ_WEBHOOK_ALLOW_PRIVATE)."
            )
    else:
        addresses = _resolve_name(host, port, allow_private=allow_private, resolver=resolver)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])


def _resolve_name(host: str, port: int, *, allow_private: bool, resolver: Resolver) -> list[str]:
    """Every address of ``host``, all of them allowed; refusals say nothing of what the name resolved to."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        log.info("webhook host %r does not resolve: %s", host, exc)
        raise WebhookTargetError(UNREACHABLE_NAME) from None
    if not addresses:
        log.info("webhook host %r resolves to nothing", host)
        raise WebhookTargetError(UNREACHABLE_NAME)
    if not allow_private:
        refused = [a for a in addresses if not is_public(ipaddress.ip_address(a.split("%", 1)[0]))]
        if refused:
            log.info("webhook host %r refused: it resolves to %s", host, ", ".join(refused))
            raise WebhookTargetError(UNREACHABLE_NAME)
    return addresses
