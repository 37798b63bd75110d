"""Which addresses a user's database may be at (DESIGN.md §6): the resolver, and the class of
an address — ``public``, ``private`` (allowed only with ``BYODB_ALLOW_PRIVATE_HOSTS``) or
``forbidden`` (cloud metadata and platform endpoints, multicast, unspecified, reserved:
always refused). The guard (:mod:`.guard`) decides with them."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Literal

from byodb import executors

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressClass = Literal["public", "private", "forbidden"]

# Cloud metadata and platform endpoints: they hand out credentials, instance identity or
# host configuration to whoever asks from inside the VM, so they are refused even where
# private hosts are allowed (self-hosting on a cloud VM still must not reach them).
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    # AWS EC2, GCP (metadata.google.internal), Azure IMDS, Oracle Cloud, DigitalOcean,
    # Hetzner, OpenStack, IBM Cloud, Linode, Vultr, Huawei Cloud: the common IMDS address.
    "169.254.169.254",
    "fd00:ec2::254",                      # AWS EC2 IMDS over IPv6 (Nitro)
    "169.254.170.2",                      # AWS ECS task metadata and credentials
    "169.254.170.23", "fd00:ec2::23",     # AWS EKS Pod Identity agent (credentials)
    "169.254.169.253", "fd00:ec2::253",   # AWS VPC DNS resolver
    "169.254.169.123", "fd00:ec2::123",   # AWS time sync service
    "fd20:ce::254",                       # GCP metadata server over IPv6
    "168.63.129.16",                      # Azure platform / WireServer (agent, DNS, probes)
    "192.0.0.192",                        # Oracle Cloud (OCI) legacy metadata
    "100.100.100.200",                    # Alibaba Cloud metadata
    "169.254.0.23",                       # Tencent Cloud metadata (metadata.tencentyun.com)
    "169.254.42.42", "fd00:42::42",       # Scaleway metadata
    "fe80::a9fe:a9fe",                    # OpenStack metadata over IPv6 link-local
))
_ADDRESS_RANK: dict[AddressClass, int] = {"public": 0, "private": 1, "forbidden": 2}
# NAT64 (RFC 6052 / RFC 8215): the translator sends packets to the embedded IPv4 address.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")        # deprecated ::a.b.c.d
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)


async def system_resolver(host: str, port: int) -> list[str]:
    # On the DNS pool of its own (byodb.executors), never the default thread pool.
    infos = await executors.resolve(host, port, kind=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _strictest(*kinds: AddressClass) -> AddressClass:
    return max(kinds, key=_ADDRESS_RANK.__getitem__)


def _ipv4_at(ip: ipaddress.IPv6Address, *bit_ranges: tuple[int, int]) -> ipaddress.IPv4Address:
    """The IPv4 address stored in ``bit_ranges`` (first bit, last bit + 1, counted from the
    left) of ``ip`` — RFC 6052 splits it around the reserved bits 64..71 for some prefixes."""
    value = 0
    for start, end in bit_ranges:
        width = end - start
        value = (value << width) | ((int(ip) >> (128 - end)) & ((1 << width) - 1))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address a packet to ``ip`` may be delivered to by a relay or translator
    on our side of the network (empty when ``ip`` is plain IPv6)."""
    if ip.ipv4_mapped is not None:                        # ::ffff:a.b.c.d
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:                          # 6to4 2002:AABB:CCDD::/48
        return (ip.sixtofour,)
    if ip.teredo is not None:                             # Teredo 2001::/32
        # (server, client); Python already undoes the bitwise NOT of the client address.
        # The client is where packets go; the server is judged too, to be safe.
        server, client = ip.teredo
        return (client, server)
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_TRANSLATED:  # 64:ff9b::a.b.c.d, SIIT
        return (_ipv4_at(ip, (96, 128)),)
    if ip in _NAT64_LOCAL_USE:
        # The local translator's prefix length is unknown (/48 to /96 fit in this block):
        # every RFC 6052 position is a candidate, and the strictest verdict wins. A position
        # holding only zero bits is the unused part of a longer prefix, not 0.0.0.0.
        candidates = (_ipv4_at(ip, (48, 64), (72, 88)), _ipv4_at(ip, (56, 64), (72, 96)),
                      _ipv4_at(ip, (72, 104)), _ipv4_at(ip, (96, 128)))
        return tuple(v4 for v4 in candidates if int(v4)) or (ipaddress.IPv4Address(0),)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:            # ::a.b.c.d, but not :: or ::1
        return (_ipv4_at(ip, (96, 128)),)
    return ()


def _classify_plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AddressClass:
    if ip in _METADATA_ADDRESSES or ip.is_multicast or ip.is_unspecified:
        return "forbidden"
    if ip.is_loopback or ip.is_private or ip.is_link_local:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # fec0::/10, deprecated
        return "private"
    if ip.is_reserved:
        return "forbidden"
    return "private" if not ip.is_global else "public"


def classify_address(address: str) -> AddressClass:
    """``public``, ``private`` (loopback/private/site-local/link-local/shared) or
    ``forbidden`` (metadata/platform, multicast, unspecified, reserved).

    An IPv6 address that embeds an IPv4 address is judged by the IPv4 address it reaches
    (the strictest, when several are possible): ``2002:a9fe:a9fe::1`` is the metadata
    service, ``64:ff9b::a00:1`` is 10.0.0.1. An embedded *public* IPv4 address is public —
    the packet reaches the same host as the plain address would — so a user on a NAT64
    network can still use their IPv4-only provider. Local-use NAT64 (``64:ff9b:1::/48``)
    is at least private: that translator is on our own network.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip in _METADATA_ADDRESSES:
        return "forbidden"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded:
            kinds = [_classify_plain(v4) for v4 in embedded]
            if ip in _NAT64_LOCAL_USE:
                kinds.append("private")
            return _strictest(*kinds)
    return _classify_plain(ip)
