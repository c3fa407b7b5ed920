"""robots.txt, honoured by default: before the first image request to an origin (scheme, host, port), its
/robots.txt is fetched once per download process through the same guarded opener (the URL guard and the body
bound apply), cached, and every image URL on that origin is checked against it.

Semantics of RFC 9309: a 2xx answer is parsed (its first 512 KiB); a 4xx answer (none there, forbidden, ...) means
no rules, so everything is allowed; a 5xx answer or a network failure means the site cannot say, so everything is
disallowed ("robots_unavailable"), as the RFC asks; redirects are followed by the opener. The rules of the groups
naming our product token and img2dataset's token (the one X-Robots-Tag directives are addressed to), or `*`,
apply: a URL is fetched only if every one of those tokens may fetch it. An origin the URL guard refuses is left to
the guard (its own refusal reason, no robots request). `--ignore-robots` turns this off (recorded in the saved
settings and the report).
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.robotparser
from urllib.parse import urlsplit, urlunsplit

#: Messages `idia.download.index.reason_code` maps to `robots_disallowed` / `robots_unavailable`.
ROBOTS_DISALLOWED = "disallowed by robots.txt"
ROBOTS_UNAVAILABLE = "robots.txt unavailable"
ROBOTS_MAX_BYTES = 512 * 1024


class RobotsRefused(OSError):
    pass


class LeftToTheGuard(OSError):
    """The robots.txt request itself was refused by the URL guard."""


class RobotsPolicy:
    """Per-origin robots.txt rules for one process. `fetch(url)` -> (status, body bytes) or raises OSError."""

    def __init__(self, agents: tuple[str, ...], fetch):
        self.agents = tuple(a for a in agents if a)
        self._fetch = fetch
        self._rules: dict[str, object] = {}  # origin -> RobotFileParser, "allow_all" or "unavailable"
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def origin(url: str) -> str:
        p = urlsplit(url)
        return urlunsplit((p.scheme.lower(), p.netloc.lower(), "", "", ""))

    def _rules_for(self, origin: str):
        with self._guard:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch per origin, however many threads ask at once
            if origin not in self._rules:
                self._rules[origin] = self._load(origin)
            return self._rules[origin]

    def _load(self, origin: str):
        try:
            status, body = self._fetch(origin + "/robots.txt")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, b""
        except LeftToTheGuard:
            return "allow_all"  # the guard refuses the origin itself, with its own reason
        except OSError:
            return "unavailable"
        if 400 <= status < 500:
            return "allow_all"
        if status >= 500 or status < 200 or status >= 300:
            return "unavailable"
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace").splitlines())
        return parser

    def check(self, url: str) -> None:
        """Raise RobotsRefused when the origin's robots.txt disallows `url` (or cannot be read)."""
        origin = self.origin(url)
        rules = self._rules_for(origin)
        if rules == "allow_all":
            return
        if rules == "unavailable":
            raise RobotsRefused(f"{ROBOTS_UNAVAILABLE}: {origin}/robots.txt answered 5xx or could not be reached")
        for agent in self.agents:
            if not rules.can_fetch(agent, url):
                raise RobotsRefused(f"{ROBOTS_DISALLOWED}: {url} (user agent {agent})")
