"""Which URLs a user may have vid2mp3 call (a webhook receiver, a video to import): the guard against server-side
request forgery, for both.

Such a URL is chosen by a user, and the function that calls it runs inside the cluster, next to the data stores and
the cloud's metadata service. So its host is resolved ONCE, every address it resolves to is checked, and the request
goes to that checked address (`connection_pool`, with the URL's host name for TLS and `Host`): a DNS answer that
changes between the check and the connection (DNS rebinding) cannot send it elsewhere. Loopback, private, link-local
(169.254.169.254, the metadata service, among them), multicast, reserved and unspecified addresses are refused, IPv4
and IPv6 alike (an IPv4 address mapped into IPv6 is checked as IPv4). Redirects are never followed here: a caller
that follows them checks each one again. Webhooks must use `https`; an import may use `http` too (`allow_http`).

The local stack's receivers and test servers listen on 127.0.0.1 over plain HTTP: `allow_loopback`
(`WEBHOOK_ALLOW_LOOPBACK`, `URL_IMPORT_ALLOW_LOOPBACK`) lets exactly that through, and nothing else. An operator may
let imports reach named internal networks (`URL_IMPORT_ALLOW_NETWORKS`, e.g. an object store at 10.0.5.0/24):
`allowed_networks` lets exactly those through.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass

import certifi
import urllib3

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048


class RefusedAddress(ValueError):
    """The URL may not be called; the message says why in words a user can act on."""


@dataclass(frozen=True)
class Target:
    """A URL whose host has been resolved and checked: connect to `address`, present `host`."""

    url: str
    scheme: str
    host: str
    port: int
    address: IpAddress
    path: str


def forbidden_reason(address: IpAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for reason, flagged in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                            ("private", address.is_private), ("multicast", address.is_multicast),
                            ("reserved", address.is_reserved), ("unspecified", address.is_unspecified)):
        if flagged:
            return reason
    # Carrier-grade NAT (100.64.0.0/10) is neither private nor global in Python's tables: still not the internet.
    return None if address.is_global else "not a public"


def networks(text: str) -> tuple[IpNetwork, ...]:
    """`10.0.5.0/24, 192.0.2.7` (a single address is its own /32 or /128); ValueError names what is not one."""
    return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())


def parse(url: str, *, allow_loopback: bool, allow_http: bool = False) -> tuple[str, str, int, str]:
    """Checks the URL's form; answers (scheme, host, port, path with query)."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedAddress(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unbalanced `[` of an IPv6 host (found by schemathesis: it was a 500)
        raise RefusedAddress("the URL is malformed") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RefusedAddress(f"the URL must be an absolute {'http(s)' if allow_http else 'https'}:// URL")
    if parts.username or parts.password:
        raise RefusedAddress("the URL must not carry credentials")
    if parts.fragment:
        raise RefusedAddress("the URL must not have a fragment")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise RefusedAddress("the URL's port is not a number from 1 to 65535")
    port = port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "http" and not (allow_loopback or allow_http):
        raise RefusedAddress("the URL must use https")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def resolve(url: str, *, allow_loopback: bool, allow_http: bool = False,
            allowed_networks: tuple[IpNetwork, ...] = ()) -> Target:
    """The checked target of `url`, or RefusedAddress. Resolves the host name (a blocking DNS lookup)."""
    scheme, host, port, path = parse(url, allow_loopback=allow_loopback, allow_http=allow_http)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedAddress(f"the host {host!r} does not resolve") from None
    # A link-local IPv6 answer carries its zone (`fe80::1%eth0`), which ip_address does not take.
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    for address in addresses:
        reason = forbidden_reason(address)
        if (reason == "loopback" and allow_loopback) or any(address in network for network in allowed_networks):
            continue
        if reason is not None:
            raise RefusedAddress(f"the host {host!r} resolves to a {reason} address, which vid2mp3 may not call")
    if scheme == "http" and not allow_http and not all(address.is_loopback for address in addresses):
        raise RefusedAddress("only a loopback receiver may use http; the URL must use https")
    # Every address passed; connect to one of them, the same one for the whole request.
    return Target(url=url, scheme=scheme, host=host, port=port, address=sorted(addresses, key=str)[0], path=path)


def host_header(target: Target) -> str:
    default_port = 443 if target.scheme == "https" else 80
    return target.host if target.port == default_port else f"{target.host}:{target.port}"


def connection_pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A pool of one connection to the checked address, presenting the URL's host name (TLS verified against it).
    Send with `redirect=False, retries=False` and `Host: host_header(target)`."""
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(str(target.address), target.port, timeout=timeout, retries=False,
                                           maxsize=1, server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    return urllib3.HTTPConnectionPool(str(target.address), target.port, timeout=timeout, retries=False, maxsize=1)
