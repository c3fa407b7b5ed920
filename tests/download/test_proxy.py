"""Proxies from the environment: requests travel through the operator's proxy (a real forward proxy on loopback,
started here), which the guard lets through as configured, while every target behind it is still checked: a target
the guard refuses never reaches the proxy."""

from __future__ import annotations

import urllib.error

import pytest

from idia.download.opener import build_guarded_opener
from idia.download.url_guard import UrlGuard
from idia.world.server import LoopbackServer
from jobs.download import env_proxies
from tests.support.http_fixtures import _send, image_bytes
from tests.support.proxy import ForwardProxy

GOOD = image_bytes("JPEG")


@pytest.fixture()
def hosts(tmp_path, monkeypatch):
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    site = LoopbackServer(tmp_path, host="127.0.0.1", routes={"/a.jpg": lambda h: _send(h, GOOD)}).start()
    forbidden = LoopbackServer(tmp_path, host="127.0.0.2", routes={"/a.jpg": lambda h: _send(h, GOOD)}).start()
    with ForwardProxy() as proxy:
        yield site, forbidden, proxy
    site.stop()
    forbidden.stop()


def test_requests_go_through_the_proxy_and_refused_targets_never_reach_it(hosts, monkeypatch):
    site, forbidden, proxy = hosts
    monkeypatch.setenv("http_proxy", proxy.url)
    proxies = dict(env_proxies())
    assert proxies["http"] == proxy.url
    opener = build_guarded_opener(UrlGuard(allowed_networks=("127.0.0.1/32",)), proxies=proxies)
    assert opener.open(site.url("a.jpg"), timeout=10).read() == GOOD
    assert proxy.seen == [site.url("a.jpg")] and site.requests == ["/a.jpg"]
    with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback .*behind a proxy"):
        opener.open(forbidden.url("a.jpg"), timeout=10)
    assert proxy.seen == [site.url("a.jpg")] and forbidden.requests == []
    # The default guard: the proxy itself (configured, so trusted) is reachable, but a loopback target is not.
    strict = build_guarded_opener(UrlGuard(), proxies=proxies)
    with pytest.raises(urllib.error.URLError, match="refused by url guard: loopback"):
        strict.open(site.url("a.jpg"), timeout=10)
    assert len(proxy.seen) == 1


def test_without_a_proxy_in_the_environment_nothing_changes(hosts, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert env_proxies() == ()
