"""Destination rules: every address class refused, odd spellings read as the addresses they are."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from reconciler.adapters.notify.destinations import (
    DestinationGuard,
    DestinationRefused,
    literal_address,
    refusal,
)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),  # a scope id does not hide the class
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),  # broadcast, inside 240.0.0.0/4
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("198.18.0.1", "private"),  # benchmarking range
        ("192.0.2.1", "private"),  # documentation range
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:127.0.0.1", "IPv4-mapped a loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped a private"),
        ("::ffff:169.254.169.254", "IPv4-mapped a cloud metadata"),
        ("2002:7f00:1::", "6to4 a loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a9fe:a9fe::", "6to4 a cloud metadata"),  # 6to4 wrapping 169.254.169.254
        ("64:ff9b::7f00:1", "NAT64 a loopback"),
        ("64:ff9b::a00:1", "NAT64 a private"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
def test_non_public_addresses_are_refused_naming_their_class(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",  # IPv4-mapped public: reaches a public host
        "2002:808:808::",  # 6to4 wrapping 8.8.8.8
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.1", "127.0.0.1"),  # hex, short form
        ("127.1", "127.0.0.1"),  # short form
        ("[::1]", "::1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("example.com", None),
        ("0x7f.example", None),
    ],
)
def test_odd_spellings_of_addresses_are_read_as_addresses(host: str, address: str | None) -> None:
    literal = literal_address(host)
    assert literal == (ipaddress.ip_address(address) if address else None)


def resolver_of(table: dict[str, Sequence[str]]) -> DestinationGuard:
    return DestinationGuard(allow_private=False, resolver=lambda host, port: table[host])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://2130706433/hook", "^the address is not allowed$"),
        ("https://0x7f.1/hook", "^the address is not allowed$"),
        ("https://[::ffff:127.0.0.1]/", "^the address is not allowed$"),
        ("https://0177.0.0.1/", "^the address is not allowed$"),
        ("https://169.254.169.254/latest/meta-data", "^the address is not allowed$"),
        ("https://inside.example/hook", "^the address is not allowed$"),
        ("https://mixed.example/hook", "^the address is not allowed$"),  # one bad record is enough
        ("https://user:pw@public.example/", "credentials"),
        ("ftp://public.example/", "https"),
        ("http://public.example/", "https"),
        ("https:///path", "no host"),
        ("https://public.example:99999/", "valid URL"),
        ("https://public.example/a b", "spaces"),
        ("https://nowhere.example/", "does not resolve"),
        ("https://public.example/" + "a" * 2048, "2048"),
    ],
)
def test_registration_refuses_urls_that_would_reach_inside_or_are_malformed(
    url: str, message: str
) -> None:
    guard = resolver_of(
        {
            "inside.example": ["10.0.0.7"],
            "mixed.example": ["93.184.216.34", "192.168.0.1"],
            "public.example": ["93.184.216.34"],
            "nowhere.example": [],
        }
    )
    with pytest.raises(DestinationRefused, match=message):
        guard.check_url(url)


def test_a_public_https_url_is_accepted_with_its_addresses() -> None:
    guard = resolver_of({"hooks.example": ["93.184.216.34", "2606:4700::1"]})
    destination = guard.check_url("https://hooks.example/in")
    assert (destination.host, destination.port) == ("hooks.example", 443)
    assert [str(a) for a in destination.addresses] == ["93.184.216.34", "2606:4700::1"]


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:8200/", True),
        ("http://localhost:8200/", True),
        ("https://10.0.0.7/", True),
        ("http://10.0.0.7/", False),  # allowed addresses, but http only to loopback
    ],
)
def test_allowing_private_destinations_lets_http_reach_loopback_only(
    url: str, accepted: bool
) -> None:
    guard = DestinationGuard(
        allow_private=True,
        resolver=lambda host, port: {"localhost": ["127.0.0.1", "::1"]}[host],
    )
    if accepted:
        guard.check_url(url)
    else:
        with pytest.raises(DestinationRefused, match="https"):
            guard.check_url(url)
