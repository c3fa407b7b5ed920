"""Enforce the URL guard where img2dataset connects: a urllib opener whose connections and redirects are checked.

img2dataset downloads with `urllib.request.urlopen` inside its worker processes. `install(guard)` replaces the
process's global opener with one that (1) speaks only http/https (no file:, ftp:, data:, no proxies), (2) checks
every redirect target before following it, and (3) resolves each host itself, checks every address, and connects
to a checked address (so a DNS answer cannot change between check and connect). `GuardedDownloader` wraps
img2dataset's Downloader so the opener is installed in each worker (spawned process or Spark executor) before
it downloads a shard; pickling the wrapper makes the worker import this module.

The opener also bounds a response body (`max_body_bytes`): a declared Content-Length over the bound is refused
before any of the body is read, and a body without one (or lying about it) is read in chunks and abandoned as
soon as it passes the bound, so one endless or multi-gigabyte response cannot exhaust a worker's memory
(img2dataset reads bodies whole).
"""

from __future__ import annotations

import functools
import http.client
import socket
import urllib.error
import urllib.request
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
    """Replace http.client's connect step: resolve, check every address, connect only to checked ones."""

    _guard: UrlGuard

    def _guarded_create_connection(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
        host, port = address
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
    def __init__(self, *args: Any, guard: UrlGuard, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._create_connection = self._guarded_create_connection


class GuardedHTTPSConnection(_GuardedConnectionMixin, http.client.HTTPSConnection):
    # HTTPSConnection.connect() calls HTTPConnection.connect() (our socket) and then wraps it in TLS with
    # server_hostname = the URL's host, so certificate checks are unchanged.
    def __init__(self, *args: Any, guard: UrlGuard, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._create_connection = self._guarded_create_connection


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: UrlGuard):
        super().__init__()
        self.guard = guard

    def http_open(self, req):
        return self.do_open(functools.partial(GuardedHTTPConnection, guard=self.guard), req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: UrlGuard):
        super().__init__()
        self.guard = guard

    def https_open(self, req):
        return self.do_open(functools.partial(GuardedHTTPSConnection, guard=self.guard), req, context=self._context)


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


def build_guarded_opener(guard: UrlGuard, max_body_bytes: int | None = None) -> urllib.request.OpenerDirector:
    """An opener with only guarded http/https handlers: other schemes fail as 'unknown url type'; no proxies;
    bodies bounded by `max_body_bytes` when given."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),
        GuardedHTTPHandler(guard),
        GuardedHTTPSHandler(guard),
        urllib.request.HTTPDefaultErrorHandler(),
        GuardedRedirectHandler(guard),
        urllib.request.HTTPErrorProcessor(),
        *([BoundedBodyProcessor(max_body_bytes)] if max_body_bytes else []),
    ):
        opener.add_handler(handler)
    return opener


_INSTALLED: tuple[tuple, urllib.request.OpenerDirector] | None = None


def install(guard: UrlGuard, max_body_bytes: int | None = None) -> None:
    """Make `urllib.request.urlopen` in this process go through the guarded opener (idempotent)."""
    global _INSTALLED
    key = (guard, max_body_bytes)
    if _INSTALLED is not None and _INSTALLED[0] == key and urllib.request._opener is _INSTALLED[1]:  # noqa: SLF001
        return
    opener = build_guarded_opener(guard, max_body_bytes)
    urllib.request.install_opener(opener)
    _INSTALLED = (key, opener)


class GuardedDownloader:
    """Wraps img2dataset's Downloader (any callable taking a shard row): installs the guard in the worker first."""

    def __init__(self, downloader: Any, guard: UrlGuard, max_body_bytes: int | None = None, storage_conf: tuple = ()):
        self.downloader = downloader
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.storage_conf = storage_conf  # idia.core.storage.shipped_conf(): the driver's object-store settings

    def __call__(self, row):
        install(self.guard, self.max_body_bytes)
        if self.storage_conf:
            from idia.core import storage

            storage.apply_shipped(self.storage_conf)
        return self.downloader(row)
