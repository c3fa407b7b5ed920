"""Image checks before img2dataset's resizer: pixel limit from the header (no decode), truncation, face-box crop.

`SafeResizer` wraps img2dataset's Resizer (any callable `(stream, bbox) -> (img, w, h, ow, oh, err)`) and is what the
Downloader calls. It reads the image header first and refuses images with too many pixels *before* any decoder
allocates them (decompression bombs), refuses truncated files (a decoder would silently grey-fill them), and, when
a row carries a face box "x1,y1,x2,y2", crops to it before resizing. The box arrives through img2dataset's
per-row bbox column, which otherwise feeds its blurrer.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

#: Error messages written into img2dataset's per-row error_message; `download_index.reason_code` maps them.
ERR_NOT_IMAGE = "not an image (unrecognised format)"
ERR_TOO_MANY_PIXELS = "too many pixels"
ERR_TRUNCATED = "truncated image"
ERR_BBOX = "face box outside the image"
ERR_BAD_BBOX = "bad face box"


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """'x1,y1,x2,y2' -> floats; None/'' -> None. ValueError when malformed or empty (x2<=x1 or y2<=y1)."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"bbox {text!r}: expected x1,y1,x2,y2")
    x1, y1, x2, y2 = (float(p) for p in parts)
    if not all(v == v and abs(v) != float("inf") for v in (x1, y1, x2, y2)):
        raise ValueError(f"bbox {text!r}: not finite")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"bbox {text!r}: x2 must exceed x1 and y2 exceed y1")
    return x1, y1, x2, y2


def is_truncated(data: bytes, fmt: str | None) -> bool:
    """Structural completeness check, cheap (no decode): JPEG needs its EOI marker, PNG its IEND chunk,
    WebP a RIFF size that fits. Other formats are left to the decoder."""
    if fmt == "JPEG":
        # Trailing bytes after EOI are common (padding, appended data); look for EOI near the end.
        return data.rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9" and b"\xff\xd9" not in data[-1024:]
    if fmt == "PNG":
        return b"IEND" not in data[-64:]
    if fmt == "WEBP":
        return len(data) < 8 or int.from_bytes(data[4:8], "little") + 8 > len(data)
    if fmt == "GIF":
        return not data.rstrip(b"\x00")[-1:] == b"\x3b"
    return False


class SafeResizer:
    """Header checks + optional crop, then the wrapped resizer. Picklable (travels to the download workers)."""

    def __init__(self, resizer: Any, max_pixels: int = 89_478_485):
        self.resizer = resizer
        self.max_pixels = int(max_pixels)

    def __call__(self, img_stream: io.BytesIO, bbox: str | None = None):
        fail = (None, None, None, None, None)
        from PIL import Image  # imported in the worker only

        img_stream.seek(0)
        data = img_stream.getvalue() if hasattr(img_stream, "getvalue") else img_stream.read()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DecompressionBombWarning: we apply our own limit below
                with Image.open(io.BytesIO(data)) as im:  # reads the header only
                    width, height = im.size
                    fmt = im.format
        except Image.DecompressionBombError:
            return (*fail, ERR_TOO_MANY_PIXELS)
        except Exception:  # PIL raises several types for "not an image"; all mean the same here
            return (*fail, ERR_NOT_IMAGE)
        if width * height > self.max_pixels:
            return (*fail, f"{ERR_TOO_MANY_PIXELS} ({width}x{height} > {self.max_pixels})")
        if is_truncated(data, fmt):
            return (*fail, ERR_TRUNCATED)
        if bbox is not None and str(bbox).strip():
            try:
                box = parse_bbox(bbox)
            except ValueError as exc:
                return (*fail, f"{ERR_BAD_BBOX}: {exc}")
            cropped = self._crop(data, box, width, height)
            if cropped is None:
                return (*fail, ERR_BBOX)
            img_stream = io.BytesIO(cropped)
        img_stream.seek(0)
        return self.resizer(img_stream, None)

    @staticmethod
    def _crop(data: bytes, box, width: int, height: int) -> bytes | None:
        """Crop to the box (clipped to the image), re-encoded losslessly (PNG) for the resizer."""
        from PIL import Image

        x1, y1, x2, y2 = box
        x1, y1 = max(0, int(round(x1))), max(0, int(round(y1)))
        x2, y2 = min(width, int(round(x2))), min(height, int(round(y2)))
        if x2 - x1 < 1 or y2 - y1 < 1:
            return None
        # Boxes refer to the stored pixels (as in FaceScrub), so no EXIF rotation before cropping.
        with Image.open(io.BytesIO(data)) as im:
            crop = im.crop((x1, y1, x2, y2))
            if crop.mode not in ("RGB", "RGBA", "L"):
                crop = crop.convert("RGBA" if "A" in crop.getbands() else "RGB")
            out = io.BytesIO()
            crop.save(out, format="PNG", compress_level=1)
        return out.getvalue()
