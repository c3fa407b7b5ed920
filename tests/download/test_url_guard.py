"""The URL guard: policy on literal addresses and localhost, and the guarded urllib opener against loopback servers."""

from __future__ import annotations

import ipaddress
import urllib.error

import pytest

from idia.core.errors import UserError
from idia.download.opener import build_guarded_opener
from idia.download.url_guard import UrlGuard, classify, guard_from_option, parse_networks
from idia.world.server import LoopbackServer
from tests.support.http_fixtures import FixtureSite


@pytest.mark.parametrize(
    "addr, category",
    [
        ("8.8.8.8", "public"),
        ("2606:4700:4700::1111", "public"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link_local"),  # cloud metadata service
        ("fe80::1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "reserved"),  # documentation range
        ("255.255.255.255", "reserved"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link_local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link_local"),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_classify(addr, category):
    assert classify(ipaddress.ip_address(addr)) == category


def test_default_guard_refuses_every_non_public_kind():
    g = UrlGuard()
    assert g.check_url("http://8.8.8.8/a.jpg") == (True, None)
    assert g.check_url("https://[2606:4700:4700::1111]/a.jpg") == (True, None)
    assert g.check_url("http://127.0.0.1:8080/a.jpg") == (False, "loopback")
    assert g.check_url("http://[::1]/a.jpg") == (False, "loopback")
    assert g.check_url("http://10.0.0.5/a.jpg") == (False, "private")
    assert g.check_url("http://169.254.169.254/latest/meta-data/") == (False, "link_local")
    assert g.check_url("http://224.0.0.1/") == (False, "multicast")
    assert g.check_url("http://0.0.0.0:80/") == (False, "unspecified")
    assert g.check_url("http://240.0.0.1/") == (False, "reserved")
    # Legacy numeric IPv4 spellings that the C resolver accepts.
    assert g.check_url("http://2130706433/") == (False, "loopback")
    assert g.check_url("http://0x7f.1/") == (False, "loopback")
    assert g.check_url("http://127.1/") == (False, "loopback")


def test_localhost_is_loopback_statically_and_resolved():
    g = UrlGuard()
    assert g.check_url("http://localhost:9/x.jpg") == (False, "loopback")
    assert g.check_url("http://LOCALHOST./x.jpg") == (False, "loopback")
    assert g.check_url("http://img.localhost/x.jpg") == (False, "loopback")
    # Resolution through the system resolver (/etc/hosts; no DNS outside the machine).
    assert g.check_host("localhost", resolve=True) == (False, "loopback")


def test_schemes_and_malformed_urls():
    g = UrlGuard(allow_private=True)
    for url in (
        "file:///etc/passwd",
        "ftp://127.0.0.1/a.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "gopher://127.0.0.1/",
        "//127.0.0.1/a.jpg",
        "a.jpg",
    ):
        assert g.check_url(url) == (False, "scheme"), url
    assert g.check_url("http://[::1/a.jpg") == (False, "bad_url")
    assert g.check_url("http://:80/a.jpg") == (False, "no_host")
    assert g.check_url(None) == (False, "bad_url")
    assert g.check_url("   ") == (False, "bad_url")
    assert g.check_url("https://example.org/" + "a" * 10_000 + ".jpg") == (False, "url_too_long")
    assert g.check_url("https://example.org/" + "a" * 8000 + ".jpg")[1] != "url_too_long"
    for injected in ("http://example.org/a.jpg\r\nX-Evil: 1", "http://example.org/a\x00.jpg"):
        assert g.check_url(injected) == (False, "bad_url"), injected


def test_allow_flag_alone_allows_loopback_and_private_but_not_metadata():
    g = guard_from_option(None, allow_flag_given=True)
    assert g.allow_private
    assert g.check_url("http://127.0.0.1/a.jpg") == (True, None)
    assert g.check_url("http://192.168.0.3/a.jpg") == (True, None)
    assert g.check_url("http://169.254.169.254/") == (False, "link_local")
    assert g.check_url("http://224.0.0.1/") == (False, "multicast")


def test_allowed_networks_allow_only_those():
    g = guard_from_option("127.0.0.1/32", allow_flag_given=True)
    assert not g.allow_private
    assert g.check_url("http://127.0.0.1:1234/a.jpg") == (True, None)
    assert g.check_url("http://127.0.0.2:1234/a.jpg") == (False, "loopback")
    assert g.check_url("http://10.0.0.1/a.jpg") == (False, "private")
    assert g.check_url("http://localhost/a.jpg") == (True, None)  # localhost is 127.0.0.1
    g2 = guard_from_option("10.0.0.0/8, 169.254.0.0/16", allow_flag_given=True)
    assert g2.check_url("http://10.9.9.9/") == (True, None)
    assert g2.check_url("http://169.254.169.254/") == (True, None)
    assert g2.check_url("http://127.0.0.1/") == (False, "loopback")
    assert guard_from_option(None, allow_flag_given=False) == UrlGuard()


def test_bad_network_is_a_user_error():
    with pytest.raises(UserError, match="not-a-net"):
        parse_networks("127.0.0.1/32,not-a-net")


def test_opener_default_guard_sends_nothing(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with LoopbackServer(tmp_path) as srv:
        opener = build_guarded_opener(UrlGuard())
        for url in (srv.url("a.jpg"), srv.url("a.jpg").replace("127.0.0.1", "localhost")):
            with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback"):
                opener.open(url, timeout=5)
        assert srv.requests == []


def test_opener_refuses_other_schemes(tmp_path):
    opener = build_guarded_opener(UrlGuard(allow_private=True))
    for url in ("file:///etc/hostname", "ftp://127.0.0.1/x", "data:text/plain,hello"):
        with pytest.raises(urllib.error.URLError, match="unknown url type"):
            opener.open(url, timeout=5)


def test_opener_redirect_to_refused_address_is_not_followed(tmp_path):
    with FixtureSite(tmp_path) as site:
        opener = build_guarded_opener(UrlGuard(allowed_networks=("127.0.0.1/32",)))
        with opener.open(site.url("img/good.jpg"), timeout=5) as r:
            assert r.read()[:2] == b"\xff\xd8"
        with opener.open(site.url("redirect-ok.jpg"), timeout=5) as r:
            assert r.read()[:2] == b"\xff\xd8"
        with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback"):
            opener.open(site.url("redirect-forbidden.jpg"), timeout=5)
        # Straight to the second server: refused at connect time, nothing sent.
        with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback"):
            opener.open(site.forbidden.url("img/good.jpg"), timeout=5)
        assert site.forbidden.requests == []
        assert site.server.requests.count("/redirect-forbidden.jpg") == 1


def test_opener_https_path_is_guarded_too():
    # No TLS server needed: the refusal happens before any connection is made.
    opener = build_guarded_opener(UrlGuard())
    for url in ("https://127.0.0.1:9/a.jpg", "https://localhost:9/a.jpg", "https://[::1]:9/a.jpg"):
        with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback"):
            opener.open(url, timeout=5)
