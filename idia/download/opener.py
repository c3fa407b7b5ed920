"""Enforce the URL guard where img2dataset connects: a urllib opener whose connections and redirects are checked.

img2dataset downloads with `urllib.request.urlopen` inside its worker processes. `install(guard)` replaces the
process's global opener with one that (1) speaks only http/https (no file:, ftp:, data:; proxies only as the
environment configures them, their targets still checked), (2) checks
every redirect target before following it, and (3) resolves each host itself, checks every address, and connects
to a checked address (so a DNS answer cannot change between check and connect). `GuardedDownloader` wraps
img2dataset's Downloader so the opener is installed in each worker (spawned process or Spark executor) before
it downloads a shard; pickling the wrapper makes the worker import this module.

Every request carries the run's User-Agent (the tool, its version, the operator's contact) and, unless robots.txt is
ignored, is checked against its origin's robots.txt first (`idia.download.robots`). The opener also bounds a
response body (`max_body_bytes`): a declared Content-Length over the bound is refused
before any of the body is read, and a body without one (or lying about it) is read in chunks and abandoned as
soon as it passes the bound, so one endless or multi-gigabyte response cannot exhaust a worker's memory
(img2dataset reads bodies whole).
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from idia.download.url_guard import UrlGuard, literal_host_address, resolve_host

#: Prefix of every refusal message; `idia.download.index.reason_code` parses it back into a reason code.
REFUSAL_PREFIX = "refused by url guard:"


class GuardRefused(OSError):
    """The guard refused a URL or address. An OSError so urllib wraps it in URLError like any connect failure."""

    def __init__(self, category: str, detail: str = ""):
        self.category = category
        super().__init__(f"{REFUSAL_PREFIX} {category}" + (f" ({detail})" if detail else ""))


#: The message of a body over the bound; `idia.download.index.reason_code` maps it to "body_too_large".
BODY_TOO_LARGE = "response body too large"


class BodyTooLarge(OSError):
    def __init__(self, limit: int, detail: str):
        super().__init__(f"{BODY_TOO_LARGE}: {detail}, the limit is {limit} bytes (--max-body-bytes)")


class BoundedBodyProcessor(urllib.request.BaseHandler):
    """Refuse a declared Content-Length over `limit`; make `read()` stop with BodyTooLarge once `limit` is passed."""

    handler_order = 1000  # after the error processor: only bodies of successful responses are read

    def __init__(self, limit: int):
        self.limit = limit

    def http_response(self, req, response):
        declared = response.headers.get("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > self.limit:
            response.close()
            raise BodyTooLarge(self.limit, f"Content-Length {int(declared)}")
        raw_read, limit = response.read, self.limit

        def read(amt: int | None = None) -> bytes:
            if amt is not None and amt >= 0:
                return raw_read(amt)
            chunks, total = [], 0
            while True:
                chunk = raw_read(min(1 << 16, limit + 1 - total))
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    response.close()
                    raise BodyTooLarge(limit, f"more than {limit} bytes read")

        response.read = read
        return response

    https_response = http_response


class _GuardedConnectionMixin:
    """Replace http.client's connect step: resolve, check every address, connect only to checked ones. A configured
    proxy (`_proxies`: the operator's own, from the environment) is connected to unchecked; the targets behind it are
    checked by the handler before the request is sent."""

    _guard: UrlGuard
    _proxies: frozenset = frozenset()

    def _guarded_create_connection(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
        host, port = address
        if (host.lower(), port) in self._proxies:
            return socket.create_connection((host, port), timeout, source_address)
        lit = literal_host_address(host)
        addrs = [lit] if lit is not None else resolve_host(host, port)  # DNS errors propagate as gaierror
        for addr in addrs:
            ok, category = self._guard.check_address(addr)
            if not ok:
                raise GuardRefused(category or "address", f"{host} -> {addr}")
        last: OSError | None = None
        for addr in addrs:
            try:
                return socket.create_connection((str(addr), port), timeout, source_address)
            except OSError as exc:
                last = exc
        raise last or OSError(f"cannot connect to {host}")


class GuardedHTTPConnection(_GuardedConnectionMixin, http.client.HTTPConnection):
    def __init__(self, *args: Any, guard: UrlGuard, proxies: frozenset = frozenset(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._proxies = proxies
        self._create_connection = self._guarded_create_connection


class GuardedHTTPSConnection(_GuardedConnectionMixin, http.client.HTTPSConnection):
    # HTTPSConnection.connect() calls HTTPConnection.connect() (our socket) and then wraps it in TLS with
    # server_hostname = the URL's host, so certificate checks are unchanged.
    def __init__(self, *args: Any, guard: UrlGuard, proxies: frozenset = frozenset(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._proxies = proxies
        self._create_connection = self._guarded_create_connection


def _check_behind_proxy(guard: UrlGuard, req) -> None:
    """A request sent through a proxy: the proxy connects to the target, so the target is checked here, with its
    addresses resolved by us (the proxy resolves it again: see docs/cluster.md on what the guard cannot see)."""
    if req.has_proxy() or getattr(req, "_tunnel_host", None):
        ok, category = guard.check_url(req.full_url, resolve=True)
        if not ok:
            raise urllib.error.URLError(GuardRefused(category or "address", f"{req.full_url} behind a proxy"))


def proxy_endpoints(proxies: dict[str, str]) -> frozenset:
    """(host, port) of every configured proxy: the connections the guard lets through unchecked."""
    from urllib.parse import urlsplit

    out = set()
    for url in proxies.values():
        p = urlsplit(url if "://" in url else f"http://{url}")
        if p.hostname:
            out.add((p.hostname.lower(), p.port or (443 if p.scheme == "https" else 80)))
    return frozenset(out)


@dataclass(frozen=True)
class Politeness:
    """Per-host limits of one download process: connections in flight, request rate, and 429/503 handling."""

    connections: int = 8
    rate: float | None = None  # requests per second to one host
    busy_retries: int = 2
    max_retry_after: float = 30.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header as seconds from now (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class HostThrottle:
    """Per-host politeness shared by every thread of a process: at most `connections` requests in flight to a host,
    starts spaced by 1/rate, and a host that answered 429/503 paused for its Retry-After for everyone."""

    def __init__(self, politeness: Politeness):
        self.p = politeness
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    def _slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            if host not in self._slots:
                self._slots[host] = threading.BoundedSemaphore(max(1, self.p.connections))
            return self._slots[host]

    def _wait_turn(self, host: str) -> None:
        gap = 1.0 / self.p.rate if self.p.rate else 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start.get(host, 0.0))
            self._next_start[host] = start + gap
        if start > now:
            time.sleep(start - now)

    def pause(self, host: str, seconds: float) -> None:
        with self._lock:
            self._next_start[host] = max(self._next_start.get(host, 0.0), time.monotonic() + seconds)

    def open(self, host: str, do_open):
        """Run `do_open()` (connect, send, read the headers) under the host's limits, retrying 429/503 answers."""
        attempt = 0
        while True:
            with self._slot(host):
                self._wait_turn(host)
                resp = do_open()
            if resp.status not in (429, 503) or attempt >= self.p.busy_retries:
                return resp
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            wait = float(2**attempt) if wait is None else wait
            if wait > self.p.max_retry_after:
                return resp  # fails as http_429 / http_503 now rather than holding a thread for that long
            resp.close()
            self.pause(host, wait)
            attempt += 1


def _target_host(req) -> str:
    return getattr(req, "_tunnel_host", None) or urllib.request.urlparse(req.full_url).netloc or req.host


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: UrlGuard, throttle: HostThrottle | None = None, proxies: frozenset = frozenset()):
        super().__init__()
        self.guard = guard
        self.throttle = throttle
        self.proxies = proxies

    def http_open(self, req):
        _check_behind_proxy(self.guard, req)
        conn = functools.partial(GuardedHTTPConnection, guard=self.guard, proxies=self.proxies)

        def do_open():
            return self.do_open(conn, req)

        return self.throttle.open(_target_host(req), do_open) if self.throttle else do_open()


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: UrlGuard, throttle: HostThrottle | None = None, proxies: frozenset = frozenset()):
        super().__init__()
        self.guard = guard
        self.throttle = throttle
        self.proxies = proxies

    def https_open(self, req):
        _check_behind_proxy(self.guard, req)
        conn = functools.partial(GuardedHTTPSConnection, guard=self.guard, proxies=self.proxies)

        def do_open():
            return self.do_open(conn, req, context=self._context)

        return self.throttle.open(_target_host(req), do_open) if self.throttle else do_open()


class GuardedRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Check a redirect's target (scheme, literal address) before following it; the connect check does the rest."""

    def __init__(self, guard: UrlGuard):
        super().__init__()
        self.guard = guard

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        ok, category = self.guard.check_url(newurl, resolve=False)
        if not ok:
            raise urllib.error.URLError(GuardRefused(category or "redirect", f"redirect to {newurl}"))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class UserAgentHandler(urllib.request.BaseHandler):
    """Every request (images and robots.txt) says who is asking: the tool, its version and the operator's contact."""

    handler_order = 100

    def __init__(self, user_agent: str):
        self.user_agent = user_agent

    def http_request(self, req):
        req.remove_header("User-agent")
        req.add_header("User-agent", self.user_agent)
        return req

    https_request = http_request


class RobotsHandler(urllib.request.BaseHandler):
    """Check each request (redirect targets included) against its origin's robots.txt (idia.download.robots)."""

    handler_order = 200

    def __init__(self, policy):
        self.policy = policy

    def http_request(self, req):
        self.policy.check(req.full_url)
        return req

    https_request = http_request


def robots_policy(
    guard: UrlGuard, user_agent: str, agents: tuple[str, ...], timeout: float, proxies: dict[str, str] | None = None
):
    """A RobotsPolicy whose robots.txt requests go through a guarded opener of their own (no robots check)."""
    from idia.download.robots import ROBOTS_MAX_BYTES, LeftToTheGuard, RobotsPolicy

    opener = build_guarded_opener(guard, user_agent=user_agent, proxies=proxies)

    def fetch(url: str) -> tuple[int, bytes]:
        ok, _ = guard.check_url(url, resolve=True)
        if not ok:
            raise LeftToTheGuard(url)
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read(ROBOTS_MAX_BYTES)

    return RobotsPolicy(agents, fetch)


def build_guarded_opener(
    guard: UrlGuard,
    max_body_bytes: int | None = None,
    user_agent: str | None = None,
    robots=None,
    politeness: Politeness | None = None,
    proxies: dict[str, str] | None = None,
) -> urllib.request.OpenerDirector:
    """An opener with only guarded http/https handlers: other schemes fail as 'unknown url type'; bodies bounded by
    `max_body_bytes` when given; `user_agent` on every request; `robots` (a RobotsPolicy) checked before every
    request; `politeness`: per-host limits and 429/503 retries (HostThrottle); `proxies` ({"http": url, "https":
    url}, e.g. from the environment; no_proxy honoured): requests go through them, their targets still checked."""
    throttle = HostThrottle(politeness) if politeness is not None else None
    proxies = {k: v for k, v in (proxies or {}).items() if k in ("http", "https") and v}
    endpoints = proxy_endpoints(proxies)
    opener = urllib.request.OpenerDirector()
    for handler in (
        *([UserAgentHandler(user_agent)] if user_agent else []),
        *([RobotsHandler(robots)] if robots is not None else []),
        *([urllib.request.ProxyHandler(proxies)] if proxies else []),
        urllib.request.UnknownHandler(),
        GuardedHTTPHandler(guard, throttle, endpoints),
        GuardedHTTPSHandler(guard, throttle, endpoints),
        urllib.request.HTTPDefaultErrorHandler(),
        GuardedRedirectHandler(guard),
        urllib.request.HTTPErrorProcessor(),
        *([BoundedBodyProcessor(max_body_bytes)] if max_body_bytes else []),
    ):
        opener.add_handler(handler)
    return opener


_INSTALLED: tuple[tuple, urllib.request.OpenerDirector] | None = None


@dataclass(frozen=True)
class RequestPolicy:
    """How this run's requests behave beyond the URL guard: the body bound, the User-Agent, robots.txt."""

    max_body_bytes: int | None = None
    user_agent: str | None = None
    robots_agents: tuple[str, ...] = ()  # empty: robots.txt not honoured (--ignore-robots)
    timeout: float = 10.0
    politeness: Politeness = Politeness()
    proxies: tuple[tuple[str, str], ...] = ()  # (scheme, proxy URL): the driver's environment, as it started


def install(guard: UrlGuard, policy: RequestPolicy = RequestPolicy()) -> None:
    """Make `urllib.request.urlopen` in this process go through the guarded opener (idempotent; the robots.txt
    cache lives as long as the installed opener)."""
    global _INSTALLED
    key = (guard, policy)
    if _INSTALLED is not None and _INSTALLED[0] == key and urllib.request._opener is _INSTALLED[1]:  # noqa: SLF001
        return
    proxies = dict(policy.proxies)
    robots = (
        robots_policy(guard, policy.user_agent or "", policy.robots_agents, policy.timeout, proxies)
        if policy.robots_agents
        else None
    )
    opener = build_guarded_opener(guard, policy.max_body_bytes, policy.user_agent, robots, policy.politeness, proxies)
    urllib.request.install_opener(opener)
    _INSTALLED = (key, opener)


class GuardedDownloader:
    """Wraps img2dataset's Downloader (any callable taking a shard row): installs the guard in the worker first."""

    def __init__(self, downloader: Any, guard: UrlGuard, policy: RequestPolicy, storage_conf: tuple = ()):
        self.downloader = downloader
        self.guard = guard
        self.policy = policy
        self.storage_conf = storage_conf  # idia.core.storage.shipped_conf(): the driver's object-store settings

    def __call__(self, row):
        install(self.guard, self.policy)
        if self.storage_conf:
            from idia.core import storage

            storage.apply_shipped(self.storage_conf)
        # img2dataset prints a whole traceback for a shard that fails (a full disk, a lost bucket): one line instead
        import contextlib
        import io
        import sys

        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            result = self.downloader(row)
        text = captured.getvalue().strip()
        if text:
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            last = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "^", "~"))), lines[-1])
            shard = row[0] if isinstance(row, (tuple, list)) and row else "?"
            print(f"download: shard {shard}: img2dataset reported an error: {last[:300]}", file=sys.stderr, flush=True)
        return result
