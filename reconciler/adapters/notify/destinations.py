"""Where a notification may go: public addresses only, checked at registration and at connect.

A merchant chooses the URL, so without a check the service would POST wherever the
merchant points it: its own admin port, the cloud metadata service, a database on the
private network (SSRF). The host is resolved and every address it resolves to must be
public; a connection then goes to an address that passed the check, never to a fresh
DNS answer, so a name that resolves to a public address at registration and to a private
one later (DNS rebinding) cannot reach inside.

Refusals say only "the address is not allowed": an answer that named the address a name
resolved to (or its kind) would let a merchant map the private network through the API.
Lookups have a deadline (`resolving.py`): a name whose DNS never answers does not hold
the caller (a request thread at registration, an attempt at delivery).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from reconciler.adapters.notify import deadline
from reconciler.adapters.notify.resolving import LookupTimedOut, ResolverPool, shared_pool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) → addresses, as getaddrinfo gives

MAX_URL_LENGTH = 2048

# Cloud metadata services; most sit in ranges refused anyway, named here so the error says so.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


NOT_ALLOWED = "the address is not allowed"
UNKNOWN_HOST = "the host name does not resolve"


class DestinationRefused(ValueError):
    """A URL the service will not deliver to; the message says why, naming no address.

    `detail` says more (which address, what kind) for the operator's log only.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class UnknownHost(DestinationRefused):
    """The host name has no address (NXDOMAIN, or no record of a usable family)."""


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve a host name the way a connection would (getaddrinfo)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnknownHost(UNKNOWN_HOST, f"cannot resolve {host!r}: {exc}") from None
    return [str(info[4][0]) for info in infos]


def literal_address(host: str) -> Address | None:
    """Read a host that is an IP address, in any spelling a resolver accepts; else None.

    Besides the usual forms, C's `inet_aton` (which getaddrinfo uses) reads `2130706433`,
    `0x7f.1`, `0177.0.0.1` and `127.1` as 127.0.0.1: those are addresses too.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not bare or not all(c.isalnum() or c == "." for c in bare) or not bare.isascii():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if any(address in net for net in NAT64):
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address) -> str | None:
    """Say why a connection to `address` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, inner = embedded
            reason = refusal(inner)
            return f"{kind} {reason}" if reason else None
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if address in METADATA:
        return "a cloud metadata address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (
            isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL,
            "a unique-local address",
        ),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((why for hit, why in checks if hit), None)


_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


@dataclass(frozen=True)
class Destination:
    """A checked URL: its parts and the addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[Address, ...]  # empty when the lookup was left to delivery time

    @property
    def loopback(self) -> bool:
        return bool(self.addresses) and all(a.is_loopback for a in self.addresses)


class DestinationGuard:
    """Check destinations against the address rules (off when private ones are allowed)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        lookups: ResolverPool | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.lookups = lookups

    def resolve(
        self, host: str, port: int, *, timeout_s: float | None = None
    ) -> tuple[Address, ...]:
        """Resolve `host` and return its addresses if every one may be reached; else refuse.

        Every address must pass, not just the first: a name with one public and one
        private record would otherwise reach inside on the second. With `timeout_s` the
        lookup runs on the lookup pool and raises `LookupTimedOut` past it.
        """
        literal = literal_address(host)
        if literal is not None:
            addresses: tuple[Address, ...] = (literal,)
        else:
            if timeout_s is None:
                answers = self.resolver(host, port)
            else:
                pool = self.lookups or shared_pool()
                answers = pool.resolve(self.resolver, host, port, timeout_s)
            found = []
            for raw in answers:
                try:
                    found.append(ipaddress.ip_address(raw))
                except ValueError:
                    raise UnknownHost(UNKNOWN_HOST, f"{host!r} resolved to {raw!r}") from None
            addresses = tuple(dict.fromkeys(found))
        if not addresses:
            raise UnknownHost(UNKNOWN_HOST, f"{host!r} resolves to no address")
        if not self.allow_private:
            for address in addresses:
                reason = refusal(address)
                if reason is not None:
                    raise DestinationRefused(NOT_ALLOWED, f"{host} resolves to {address}, {reason}")
        return addresses

    def check_url(self, url: str, *, lookup_timeout_s: float | None = None) -> Destination:
        """Check an endpoint URL at registration: its form, its scheme and where it resolves.

        `https` is required, except for a loopback host when private destinations are
        allowed (a receiver on the developer's machine). With `lookup_timeout_s`, a name
        that does not resolve in time is accepted with no addresses: the check is left to
        delivery time, where every connection is checked anyway.
        """
        if len(url) > MAX_URL_LENGTH:
            raise DestinationRefused(f"the URL is over {MAX_URL_LENGTH} characters")
        if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
            raise DestinationRefused("the URL must be ASCII without spaces (punycode a name)")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise DestinationRefused(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise DestinationRefused("the URL must start with https://")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise DestinationRefused("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise DestinationRefused("the URL must not carry credentials")
        port = port or (443 if scheme == "https" else 80)
        try:
            addresses = self.resolve(host, port, timeout_s=lookup_timeout_s)
        except LookupTimedOut:
            addresses = ()
        destination = Destination(url, scheme, host, port, addresses)
        if scheme == "http" and not (self.allow_private and destination.loopback):
            raise DestinationRefused(
                "the URL must use https (http only to a loopback host with "
                "RECONCILER_NOTIFY_ALLOW_PRIVATE=1)"
            )
        return destination


# --- Connections pinned to checked addresses ---------------------------------------------


class _PinnedConnection(HTTPConnection):
    """Connect to an address the guard checked at this moment, not to a fresh DNS answer.

    Each socket is put under the deadline of the attempt that opens or reuses it
    (`deadline.py`), through a duplicate descriptor the attempt owns.
    """

    guard: DestinationGuard

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = deadline.current()
        if attempt is not None and self.sock is not None:
            attempt.watch(deadline.duplicate(self.sock))  # a kept-alive connection, reused
        super().request(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        attempt = deadline.current()
        lookup_timeout = attempt.remaining() if attempt is not None else None
        addresses = self.guard.resolve(self._dns_host, self.port, timeout_s=lookup_timeout)
        last: OSError | None = None
        for address in addresses:
            try:
                sock = create_connection(
                    (str(address), self.port),
                    max(0.01, attempt.remaining()) if attempt is not None else self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
                if attempt is not None:
                    attempt.watch(deadline.duplicate(sock))
                return sock
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    self, f"connection to {self.host} ({address}) timed out"
                ) from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"failed to connect to {self.host}: {last}") from last


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    """TLS on a pinned socket: SNI and certificate checks still use the URL's host name."""


def _pool_manager(guard: DestinationGuard, **kwargs: Any) -> PoolManager:
    http = type("PinnedHTTP", (_PinnedConnection,), {"guard": guard})
    https = type("PinnedHTTPS", (_PinnedHTTPSConnection,), {"guard": guard})
    manager = PoolManager(**kwargs)
    manager.pool_classes_by_scheme = {
        "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
    }
    return manager


class PinnedAdapter(HTTPAdapter):
    """A requests transport whose every new connection goes through the guard."""

    def __init__(self, guard: DestinationGuard, *, pool_maxsize: int = 10) -> None:
        self.guard = guard
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = _pool_manager(
            self.guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


def pinned_session(guard: DestinationGuard, *, pool_maxsize: int = 10) -> requests.Session:
    """Build a session that reaches only guarded addresses (no proxies from the environment)."""
    session = requests.Session()
    # A proxy would make the connection (and the DNS lookup) somewhere the guard cannot see.
    session.trust_env = False
    adapter = PinnedAdapter(guard, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
