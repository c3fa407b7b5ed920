"""Loopback HTTP fixtures for the download tests: good and bad images, slow/404/opt-out/redirect routes, manifests.

Everything is served on 127.0.0.x only (idia.world.server.LoopbackServer). `FixtureSite` holds the served
folder of good images plus special routes, each with the state its URL must end in.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from idia.world.server import LoopbackServer
from schemas import IDENTITIES, MANIFEST


def image_bytes(fmt: str, size=(96, 64), color=(200, 40, 40), box=None, box_color=(20, 200, 20)) -> bytes:
    """A small image in `fmt` (JPEG/PNG/WEBP), optionally with a filled box (x1, y1, x2, y2)."""
    im = Image.new("RGB", size, color)
    if box is not None:
        im.paste(box_color, box)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def noise_jpeg(size=(160, 120), seed: int = 0) -> bytes:
    """A JPEG of random pixels (tens of KB): truncating it cuts into the entropy-coded data, not the header."""
    import numpy as np

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@lru_cache(maxsize=2)
def bomb_png(side: int = 12_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels that compresses to a few KB: decoding it would need side^2 bytes+."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    raw = b"".join(comp.compress(row * 500) for _ in range(side // 500)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _send(handler, body: bytes, ctype: str = "image/jpeg", status: int = 200, headers: dict | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)


def _redirect(handler, location: str) -> None:
    handler.send_response(302)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@dataclass
class FixtureSite:
    """A loopback site: good images under /img/, special routes, and a second 'forbidden' server on 127.0.0.2."""

    root: Path
    slow_s: float = 4.0
    flaky_ok: list[bool] = field(default_factory=lambda: [False])  # /flaky.jpg: 503 until set True
    endless_bytes_sent: list[int] = field(default_factory=list)  # /huge-stream.jpg: bytes sent before the hang-up
    server: LoopbackServer | None = None
    forbidden: LoopbackServer | None = None

    def __enter__(self) -> "FixtureSite":
        img = self.root / "img"
        img.mkdir(parents=True, exist_ok=True)
        for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
            (img / f"good.{ext}").write_bytes(image_bytes(fmt))
        for i in range(40):  # distinct images for bulk rows
            (img / f"n{i:03d}.jpg").write_bytes(image_bytes("JPEG", color=(5 * i, 100, 255 - 5 * i)))
        (img / "face.png").write_bytes(
            image_bytes("PNG", size=(200, 100), color=(250, 250, 250), box=(20, 10, 120, 60), box_color=(20, 200, 20))
        )
        good = image_bytes("JPEG")
        full = noise_jpeg()
        truncated = full[: len(full) // 2]
        self.forbidden = LoopbackServer(self.root, host="127.0.0.2").start()
        forbidden_url = self.forbidden.url("img/good.jpg")

        def slow(h):
            time.sleep(self.slow_s)
            _send(h, good)

        def huge_declared(h):  # says 2 GB up front: refused before the body is read
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(2_000_000_000))
            h.end_headers()
            try:
                h.wfile.write(b"\xff" * 65536)
            except OSError:
                pass

        def huge_stream(h):  # no Content-Length, an endless body: stopped while streaming
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.end_headers()
            sent, deadline = 0, time.time() + 120
            try:
                while time.time() < deadline:  # until the client hangs up (a safety stop after 2 minutes)
                    h.wfile.write(b"\xff" * 65536)
                    sent += 65536
            except OSError:
                pass
            self.endless_bytes_sent.append(sent)
            h.close_connection = True

        def flaky(h):
            if self.flaky_ok[0]:
                _send(h, good)
            else:
                _send(h, b"busy", "text/plain", status=503)

        routes = {
            # robots.txt: everything but /private/ (the download must never request /private/face.jpg)
            "/robots.txt": lambda h: _send(h, b"User-agent: *\nDisallow: /private/\n", "text/plain"),
            "/private/face.jpg": lambda h: _send(h, good),
            "/missing.jpg": lambda h: _send(h, b"no", "text/plain", status=404),
            "/slow.jpg": slow,
            "/page.html": lambda h: _send(h, b"<html><body>not an image</body></html>", "text/html"),
            "/truncated.jpg": lambda h: _send(h, truncated),
            "/bomb.png": lambda h: _send(h, bomb_png(), "image/png"),
            "/optout.jpg": lambda h: _send(h, good, headers={"X-Robots-Tag": "noai"}),
            "/optout-ua.jpg": lambda h: _send(h, good, headers={"X-Robots-Tag": "img2dataset: noimageai"}),
            "/redirect-ok.jpg": lambda h: _redirect(h, "/img/good.jpg"),
            "/redirect-forbidden.jpg": lambda h: _redirect(h, forbidden_url),
            "/flaky.jpg": flaky,
            "/huge.jpg": huge_declared,
            "/huge-stream.jpg": huge_stream,
        }
        self.server = LoopbackServer(self.root, host="127.0.0.1", routes=routes).start()
        return self

    def __exit__(self, *exc) -> None:
        for s in (self.server, self.forbidden):
            if s is not None:
                s.stop()

    def url(self, path: str) -> str:
        assert self.server is not None
        return self.server.url(path)


def write_mine_output(folder: Path, rows: list[dict], identities: list[str], buckets: int = 2) -> Path:
    """A mine-output-shaped folder: manifests/bucket=NNN/part-00000.parquet (MANIFEST) + identities.parquet.

    rows: dicts with identity_id, SAMPLE_ID, URL (other MANIFEST columns are filled)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_bucket: dict[int, list[dict]] = {}
    for r in rows:
        b = sum(r["identity_id"].encode()) % buckets
        full = {f.name: None for f in MANIFEST}
        full.update(
            {
                "TEXT": f"a photo of {r['identity_id']}",
                "matched_alias": r["identity_id"],
                "match_score": 100.0,
                "n_identities_in_caption": 1,
                "source_file": "part-00000.parquet",
            }
        )
        full.update(r)
        by_bucket.setdefault(b, []).append(full)
    for b, rs in by_bucket.items():
        rs.sort(key=lambda r: r["identity_id"])
        d = folder / "manifests" / f"bucket={b:03d}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rs, schema=MANIFEST), d / "part-00000.parquet")
    ident = pa.Table.from_pylist(
        [
            {"identity_id": i, "name": i.title(), "aliases": [], "sex": None, "source_line": n + 1}
            for n, i in enumerate(identities)
        ],
        schema=IDENTITIES,
    )
    pq.write_table(ident, folder / "identities.parquet")
    return folder
