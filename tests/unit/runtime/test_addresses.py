"""The webhook SSRF guard on literal addresses: what is refused and why, IPv4, IPv6 and IPv4 mapped into IPv6 alike,
the URL forms refused, and loopback over http let through only with the local stack's setting."""

from __future__ import annotations

import ipaddress

import pytest

from runtime.addresses import MAX_URL_LENGTH, RefusedAddress, forbidden_reason, networks, resolve


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"), ("fe80::1", "link-local"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("fd00:ec2::254", "private"), ("fc00::1", "private"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    # The unspecified addresses: in Python's private table too, which is checked first.
    ("0.0.0.0", "private"), ("::", "private"),  # noqa: S104 - addresses to refuse, not to bind
    ("100.64.0.1", "not a public"), ("100.127.255.254", "not a public"),  # carrier-grade NAT
    # Mapped into IPv6, each is judged as the IPv4 address it is.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:100.64.0.1", "not a public"), ("::ffff:224.0.0.1", "multicast"),
])
def test_addresses_that_are_not_the_public_internet_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "1.1.1.1", "100.63.255.255", "100.128.0.1",
                                     "172.15.255.255", "172.32.0.1", "2606:4700:4700::1111", "2a00:1450:4001::1",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_a_public_literal_resolves_to_itself() -> None:
    target = resolve("https://8.8.8.8/hooks/vid2mp3?source=test", allow_loopback=False)
    assert (target.scheme, target.host, target.port) == ("https", "8.8.8.8", 443)
    assert target.path == "/hooks/vid2mp3?source=test"
    assert target.address == ipaddress.ip_address("8.8.8.8")
    six = resolve("https://[2606:4700:4700::1111]:8443", allow_loopback=False)
    assert (six.host, six.port, six.path) == ("2606:4700:4700::1111", 8443, "/")
    assert six.address == ipaddress.ip_address("2606:4700:4700::1111")


@pytest.mark.parametrize(("url", "words"), [
    ("https://127.0.0.1/", "loopback"),
    ("https://[::1]/", "loopback"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
    ("https://[::ffff:a9fe:a9fe]/", "link-local"),  # the same, written in hex
    ("https://10.1.2.3:8443/", "private"),
    ("https://[fd00:ec2::254]/", "private"),
    ("https://100.64.0.1/", "not a public"),
    ("https://224.0.0.1/", "multicast"),
    ("https://0.0.0.0/", "private"),
    ("https://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number: getaddrinfo reads it so
    ("https://0x7f.1/", "loopback"),  # and in inet_aton's short hex form
    ("http://8.8.8.8/", "must use https"),
    ("ftp://8.8.8.8/", "absolute https:// URL"),
    ("file:///etc/passwd", "absolute https:// URL"),
    ("//8.8.8.8/", "absolute https:// URL"),
    ("https:///path", "absolute https:// URL"),
    ("https://user:secret@8.8.8.8/", "credentials"),
    ("https://user@8.8.8.8/", "credentials"),
    ("https://8.8.8.8/#fragment", "fragment"),
    ("https://8.8.8.8:99999/", "port"),
    ("https://8.8.8.8:0/", "port"),  # was taken for 443
    ("https://8.8.8.8:http/", "port"),
    ("https://[::1/hook", "malformed"),
    ("https://8.8.8.8/" + "a" * MAX_URL_LENGTH, "longer than"),
])
def test_urls_the_guard_refuses(url: str, words: str) -> None:
    with pytest.raises(RefusedAddress, match=words):
        resolve(url, allow_loopback=False)


def test_the_refusal_names_the_host_and_the_kind_of_address() -> None:
    with pytest.raises(RefusedAddress) as refused:
        resolve("https://192.168.0.10/", allow_loopback=False)
    assert str(refused.value) == "the host '192.168.0.10' resolves to a private address, which vid2mp3 may not call"


@pytest.mark.parametrize(("url", "address", "port"), [
    ("http://127.0.0.1:8080/hook", "127.0.0.1", 8080),
    ("http://127.0.0.2/", "127.0.0.2", 80),
    ("https://127.0.0.1/", "127.0.0.1", 443),
    ("http://[::1]:9000/", "::1", 9000),
])
def test_the_local_setting_lets_loopback_through(url: str, address: str, port: int) -> None:
    target = resolve(url, allow_loopback=True)
    assert (str(target.address), target.port) == (address, port)


@pytest.mark.parametrize(("url", "words"), [
    ("http://8.8.8.8/", "only a loopback receiver may use http"),
    ("http://10.0.0.1/", "private"),
    ("https://10.0.0.1/", "private"),
    ("https://169.254.169.254/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0:8080/", "private"),
])
def test_the_local_setting_lets_nothing_else_through(url: str, words: str) -> None:
    with pytest.raises(RefusedAddress, match=words):
        resolve(url, allow_loopback=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1/v.mp4", "http://[::1]/v.mp4", "http://0x7f000001/v.mp4",
                                 "http://localhost/v.mp4", "http://[::ffff:127.0.0.1]/v.mp4", "http://10.1.2.3/"])
def test_an_import_may_use_http_but_reaches_no_internal_address(url: str) -> None:
    with pytest.raises(RefusedAddress, match="may not call"):
        resolve(url, allow_loopback=False, allow_http=True)


def test_an_import_may_use_http_to_a_public_address() -> None:
    target = resolve("http://8.8.8.8/video.mp4?x=1", allow_loopback=False, allow_http=True)
    assert (target.scheme, str(target.address), target.port, target.path) == ("http", "8.8.8.8", 80, "/video.mp4?x=1")
    with pytest.raises(RefusedAddress, match="https"):
        resolve("http://8.8.8.8/", allow_loopback=False)


def test_an_allowed_network_lets_its_addresses_through_and_nothing_beside_them() -> None:
    allowed = networks("10.0.5.0/24, 192.0.2.7")
    assert str(resolve("http://10.0.5.9:9000/bucket/v.mp4", allow_loopback=False, allow_http=True,
                       allowed_networks=allowed).address) == "10.0.5.9"
    assert str(resolve("http://192.0.2.7/", allow_loopback=False, allow_http=True,
                       allowed_networks=allowed).address) == "192.0.2.7"
    for refused in ("http://10.0.6.1/", "http://192.0.2.8/", "http://127.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(RefusedAddress, match="may not call"):
            resolve(refused, allow_loopback=False, allow_http=True, allowed_networks=allowed)


@pytest.mark.parametrize("text", ["10.0.5.0/33", "ten.0.0.0/8", "10.0.5.1/24"])
def test_a_setting_that_is_not_a_list_of_networks_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=text.split("/")[0]):
        networks(text)
