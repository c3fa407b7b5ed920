"""robots.txt over real HTTP (loopback servers started here): RFC 9309's answers, one fetch per origin, the groups
of our tokens, redirect targets checked too, and the User-Agent every request carries."""

from __future__ import annotations

import pytest

from idia.download.opener import build_guarded_opener, robots_policy
from idia.download.robots import RobotsRefused
from idia.download.url_guard import UrlGuard
from idia.world.server import LoopbackServer
from tests.support.http_fixtures import _redirect, _send, image_bytes

UA = "idia-audit/test (identity-leakage audit; +mailto:ops@example.org)"
GOOD = image_bytes("JPEG")


def _opener(guard: UrlGuard):
    return build_guarded_opener(guard, user_agent=UA, robots=robots_policy(guard, UA, ("idia-audit", "img2dataset"), 5))


@pytest.fixture()
def servers(tmp_path):
    agents: list[str] = []

    def image(h):
        agents.append(h.headers.get("User-Agent"))
        _send(h, GOOD)

    rules = b"User-agent: *\nDisallow: /no/\n\nUser-agent: idia-audit\nDisallow: /tool-only/\nDisallow: /no/\n"
    main = LoopbackServer(
        tmp_path,
        host="127.0.0.1",
        routes={
            "/robots.txt": lambda h: (agents.append(h.headers.get("User-Agent")), _send(h, rules, "text/plain")),
            "/ok/a.jpg": image,
            "/no/a.jpg": image,
            "/tool-only/a.jpg": image,
            "/to-no.jpg": lambda h: _redirect(h, "/no/a.jpg"),
        },
    ).start()
    broken = LoopbackServer(
        tmp_path, host="127.0.0.1", routes={"/robots.txt": lambda h: _send(h, b"down", status=503), "/a.jpg": image}
    ).start()
    plain = LoopbackServer(tmp_path, host="127.0.0.1", routes={"/a.jpg": image}).start()  # no robots.txt: 404
    yield main, broken, plain, agents
    for s in (main, broken, plain):
        s.stop()


def test_disallowed_paths_are_never_requested_and_robots_is_fetched_once(servers):
    main, _, _, agents = servers
    opener = _opener(UrlGuard(allowed_networks=("127.0.0.1/32",)))
    for _ in range(3):
        assert opener.open(main.url("ok/a.jpg"), timeout=5).read() == GOOD
    for path in ("no/a.jpg", "tool-only/a.jpg", "to-no.jpg"):  # *, our own group, and a redirect into /no/
        with pytest.raises(RobotsRefused, match="disallowed by robots.txt"):
            opener.open(main.url(path), timeout=5)
    assert main.requests.count("/robots.txt") == 1
    assert "/no/a.jpg" not in main.requests and "/tool-only/a.jpg" not in main.requests
    assert set(agents) == {UA}  # robots.txt and images alike say who asks


def test_rfc_answers_5xx_disallows_everything_and_404_allows_everything(servers):
    _, broken, plain, _ = servers
    opener = _opener(UrlGuard(allowed_networks=("127.0.0.1/32",)))
    with pytest.raises(RobotsRefused, match="robots.txt unavailable"):
        opener.open(broken.url("a.jpg"), timeout=5)
    assert "/a.jpg" not in broken.requests
    assert opener.open(plain.url("a.jpg"), timeout=5).read() == GOOD


def test_an_origin_the_guard_refuses_gets_no_robots_request_and_keeps_the_guard_s_reason(servers):
    main, _, _, _ = servers
    opener = _opener(UrlGuard())  # loopback not allowed
    with pytest.raises(OSError, match="refused by url guard: loopback"):
        opener.open(main.url("ok/a.jpg"), timeout=5)
    assert main.requests == []
