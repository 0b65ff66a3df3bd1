"""Which addresses the egress proxy may connect to, however the agent spelled them.

The agent writes the host of every request, so the host is untrusted text. Two rules hold here:

- A host is either an IP address in its one canonical spelling or a DNS name. Anything the C
  resolver would also take as an address (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) is
  refused outright, never handed to `getaddrinfo`, so it cannot slip past a check written for the
  canonical form.
- An address is internal when it is not globally routable (loopback, private, link-local and the
  metadata address 169.254.169.254, CGNAT, ULA, unspecified, reserved), multicast, or an IPv6 form
  that embeds such an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64, 6to4,
  Teredo). A name that resolves to one is refused; only a literal allow-list entry reaches one.
"""

from __future__ import annotations

import ipaddress
import re

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# the spellings inet_aton accepts: up to four parts, each decimal, octal (leading 0) or hex (0x)
_NUMERIC = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?")
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def literal(host: str) -> IP | None:
    """The IP address `host` is, in canonical form; None when it is a DNS name.

    Raises:
        PermissionError: a numeric spelling other than the canonical one, a zone index, or a
            host that is neither an address nor a well-formed name.
    """
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "%" in h:
        raise PermissionError("an address with a zone index")
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        if _NUMERIC.fullmatch(h.lower()):
            raise PermissionError("an address in a non-canonical spelling") from None
        if not _NAME.fullmatch(h) or len(h) > 253:
            raise PermissionError("not a host name") from None
        return None
    if str(ip) != h.lower():  # e.g. IPv6 written long-hand: match the allow-list on one spelling only
        raise PermissionError("an address in a non-canonical spelling")
    return ip


def internal(ip: IP) -> bool:
    """Whether `ip` (or the IPv4 address it embeds) is anything but a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(e is not None and internal(e) for e in embedded):
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified
