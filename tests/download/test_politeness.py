"""Per-host politeness over real HTTP (a loopback server started here): Retry-After on 429/503 waited for when
short and shared by the host's threads, a long one failing the URL at once, a rate limit, a connection limit."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate

import pytest

from idia.download.opener import Politeness, build_guarded_opener, retry_after_seconds
from idia.download.url_guard import UrlGuard
from idia.world.server import LoopbackServer
from tests.support.http_fixtures import _send, image_bytes

GOOD = image_bytes("JPEG")
GUARD = UrlGuard(allowed_networks=("127.0.0.1/32",))


@pytest.fixture()
def site(tmp_path):
    state = {"busy": 0, "busy_date": 0, "in_flight": 0, "peak": 0}
    lock = threading.Lock()

    def busy(h):  # 429 with Retry-After: 1 once, then the image
        state["busy"] += 1
        if state["busy"] == 1:
            return _send(h, b"slow down", "text/plain", status=429, headers={"Retry-After": "1"})
        _send(h, GOOD)

    def busy_date(h):  # 503 with an HTTP-date two seconds ahead (whole seconds: 1-2 s), once
        state["busy_date"] += 1
        if state["busy_date"] == 1:
            return _send(
                h, b"busy", "text/plain", status=503, headers={"Retry-After": formatdate(time.time() + 2, usegmt=True)}
            )
        _send(h, GOOD)

    def slow(h):
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
        time.sleep(0.3)
        with lock:
            state["in_flight"] -= 1
        _send(h, GOOD)

    routes = {
        "/busy.jpg": busy,
        "/busy-date.jpg": busy_date,
        "/busy-long.jpg": lambda h: _send(h, b"later", "text/plain", status=429, headers={"Retry-After": "3600"}),
        "/a.jpg": lambda h: _send(h, GOOD),
        "/slow.jpg": slow,
    }
    server = LoopbackServer(tmp_path, host="127.0.0.1", routes=routes).start()
    yield server, state
    server.stop()


def test_a_short_retry_after_is_waited_for_and_a_long_one_fails_at_once(site):
    server, _ = site
    opener = build_guarded_opener(GUARD, politeness=Politeness(busy_retries=2, max_retry_after=5))
    for path in ("busy.jpg", "busy-date.jpg"):
        t0 = time.monotonic()
        assert opener.open(server.url(path), timeout=10).read() == GOOD
        assert time.monotonic() - t0 >= 0.9, path  # it waited
        assert server.requests.count(f"/{path}") == 2
    t0 = time.monotonic()
    with pytest.raises(OSError, match="HTTP Error 429"):
        opener.open(server.url("busy-long.jpg"), timeout=10)
    assert time.monotonic() - t0 < 2 and server.requests.count("/busy-long.jpg") == 1


def test_a_rate_limit_spaces_the_requests_to_one_host(site):
    server, _ = site
    opener = build_guarded_opener(GUARD, politeness=Politeness(rate=5.0))
    t0 = time.monotonic()
    for _ in range(6):
        opener.open(server.url("a.jpg"), timeout=10).read()
    assert time.monotonic() - t0 >= 0.95  # 5 gaps of 0.2 s


def test_a_connection_limit_holds_across_threads(site):
    server, state = site
    opener = build_guarded_opener(GUARD, politeness=Politeness(connections=2))
    threads = [
        threading.Thread(target=lambda: opener.open(server.url("slow.jpg"), timeout=10).read()) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.requests.count("/slow.jpg") == 6 and state["peak"] == 2


def test_retry_after_forms():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10
