"""Render face-like images with PIL: an identity's appearance plus nuisance (pose, scale, crop, lighting,
background, noise), so an identity stays recognisable while no two images are the same. Also generic scenes."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from idia.world.identities import Appearance

# Drawing happens at SUPERSAMPLE x the output size and is scaled down: cheap anti-aliasing.
SUPERSAMPLE = 2

SCENE_OBJECTS = ("ball", "box", "tree", "house", "sun", "car", "flower")
SCENE_COLOURS = {
    "red": (210, 40, 40),
    "blue": (40, 80, 210),
    "green": (50, 170, 60),
    "yellow": (240, 210, 40),
    "purple": (130, 50, 170),
    "orange": (245, 140, 30),
    "black": (25, 25, 25),
    "white": (240, 240, 240),
    "pink": (240, 130, 180),
    "grey": (130, 130, 130),
}


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation that is not identity: drawn fresh for every image."""

    yaw: float  # -1..1, fake head turn (features shift sideways)
    roll: float  # degrees of in-plane rotation
    scale: float  # face size relative to the canvas
    dx: float  # face centre offset, fraction of the canvas
    dy: float
    smile: float  # 0..1
    brightness: float
    contrast: float
    tint: tuple[float, float, float]
    side_light: float  # -1..1, directional shading
    bg_a: tuple[int, int, int]
    bg_b: tuple[int, int, int]
    bg_shapes: int
    crop: float  # fraction of the canvas kept (then resized back)
    crop_x: float  # 0..1 where the crop window sits
    crop_y: float
    noise: float  # gaussian noise sigma, 0..255 scale
    blur: float
    jpeg_quality: int
    shape_seed: int


def random_nuisance(rng: np.random.Generator) -> Nuisance:
    def colour():
        return tuple(int(v) for v in rng.integers(0, 256, size=3))

    return Nuisance(
        yaw=float(rng.uniform(-0.6, 0.6)),
        roll=float(rng.normal(0, 7)),
        scale=float(rng.uniform(0.7, 1.0)),
        dx=float(rng.uniform(-0.08, 0.08)),
        dy=float(rng.uniform(-0.06, 0.06)),
        smile=float(rng.uniform(0, 1)),
        brightness=float(rng.uniform(0.75, 1.2)),
        contrast=float(rng.uniform(0.8, 1.15)),
        tint=tuple(float(v) for v in rng.uniform(0.88, 1.12, size=3)),
        side_light=float(rng.uniform(-0.5, 0.5)),
        bg_a=colour(),
        bg_b=colour(),
        bg_shapes=int(rng.integers(0, 4)),
        crop=float(rng.uniform(0.82, 1.0)),
        crop_x=float(rng.uniform(0, 1)),
        crop_y=float(rng.uniform(0, 1)),
        noise=float(rng.uniform(0, 8)),
        blur=float(rng.uniform(0, 0.8)) if rng.random() < 0.3 else 0.0,
        jpeg_quality=int(rng.integers(70, 96)),
        shape_seed=int(rng.integers(2**31)),
    )


def _background(size: int, nz: Nuisance) -> Image.Image:
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    a = np.array(nz.bg_a, np.float32)[None, None, :]
    b = np.array(nz.bg_b, np.float32)[None, None, :]
    grad = np.broadcast_to(a * (1 - t) + b * t, (size, size, 3))
    img = Image.fromarray(grad.astype(np.uint8), "RGB")
    rng = np.random.default_rng(nz.shape_seed)
    draw = ImageDraw.Draw(img)
    for _ in range(nz.bg_shapes):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x0 + w, y0 + h], fill=fill)
    return img


def _person_layer(S: int, ap: Appearance, nz: Nuisance) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The person drawn upright and centred on a transparent S x S layer; returns it and the face box."""
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = S * 0.5, S * 0.45
    fw, fh = ap.face_w * S * 0.5, ap.face_h * S * 0.5
    shift = nz.yaw * fw * 0.35  # features move toward the turned side
    skin, hair = ap.skin + (255,), ap.hair_colour + (255,)

    # shoulders and shirt, neck
    d.ellipse([cx - fw * 2.6, cy + fh * 1.25, cx + fw * 2.6, cy + fh * 3.6], fill=ap.shirt_colour + (255,))
    d.rectangle([cx - fw * 0.35, cy + fh * 0.6, cx + fw * 0.35, cy + fh * 1.45], fill=skin)
    # hair behind the head
    if ap.hair_style in ("long", "bob"):
        bottom = cy + fh * (1.6 if ap.hair_style == "long" else 0.9)
        d.rounded_rectangle([cx - fw * 1.25, cy - fh * 1.15, cx + fw * 1.25, bottom], radius=int(fw * 0.6), fill=hair)
    if ap.hair_style == "bun":
        d.ellipse([cx - fw * 0.45, cy - fh * 1.55, cx + fw * 0.45, cy - fh * 0.8], fill=hair)
    # ears
    for sx in (-1, 1):
        ex = cx + sx * fw * 0.98 - shift * 0.3
        d.ellipse([ex - fw * 0.16, cy - fh * 0.15, ex + fw * 0.16, cy + fh * 0.25], fill=skin)
        if ap.earrings:
            d.ellipse([ex - fw * 0.07, cy + fh * 0.25, ex + fw * 0.07, cy + fh * 0.39], fill=(240, 200, 40, 255))
    # face: an ellipse, squared off toward the chin by `jaw`
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    if ap.jaw > 0.35:
        r = int(fw * (1.2 - ap.jaw))
        d.rounded_rectangle([cx - fw * 0.92, cy, cx + fw * 0.92, cy + fh * 0.98], radius=max(r, 1), fill=skin)
    fx = cx + shift
    # beard
    if ap.beard:
        d.chord([cx - fw * 0.93, cy - fh * 0.05, cx + fw * 0.93, cy + fh * 1.02], 15, 165, fill=hair)
    # eyes, irises, brows
    es = ap.eye_spacing * fw
    er = ap.eye_size * fw * 1.6
    ey = cy - fh * 0.12
    for sx in (-1, 1):
        ex = fx + sx * es
        d.ellipse([ex - er * 1.3, ey - er * 0.8, ex + er * 1.3, ey + er * 0.8], fill=(250, 250, 250, 255))
        d.ellipse(
            [ex - er * 0.6 + shift * 0.2, ey - er * 0.6, ex + er * 0.6 + shift * 0.2, ey + er * 0.6],
            fill=ap.eye_colour + (255,),
        )
        bt = max(1, int(ap.brow_thickness * fh * 2))
        d.line([ex - er * 1.4, ey - er * 1.6, ex + er * 1.4, ey - er * 1.8], fill=hair, width=bt)
    # glasses
    if ap.glasses:
        gw = max(1, int(S * 0.012))
        for sx in (-1, 1):
            ex = fx + sx * es
            d.ellipse(
                [ex - er * 1.9, ey - er * 1.5, ex + er * 1.9, ey + er * 1.5],
                outline=ap.glasses_colour + (255,),
                width=gw,
            )
        d.line([fx - es + er * 1.9, ey, fx + es - er * 1.9, ey], fill=ap.glasses_colour + (255,), width=gw)
    # nose and mouth
    nl = ap.nose_len * fh * 2
    d.line(
        [fx, ey + er, fx + fw * 0.08, ey + er + nl],
        fill=tuple(int(c * 0.75) for c in ap.skin) + (255,),
        width=max(1, int(S * 0.01)),
    )
    mw = ap.mouth_w * fw
    my = cy + fh * 0.5
    curve = fh * 0.05 + nz.smile * fh * 0.18
    d.arc(
        [fx - mw, my - curve, fx + mw, my + curve],
        0 if nz.smile > 0.2 else 180,
        180 if nz.smile > 0.2 else 360,
        fill=(150, 40, 50, 255),
        width=max(1, int(S * 0.015)),
    )
    # hair on top
    style = ap.hair_style
    if style != "bald":
        top = cy - fh * 1.12
        if style == "mohawk":
            d.rectangle([cx - fw * 0.18, top - fh * 0.35, cx + fw * 0.18, cy - fh * 0.55], fill=hair)
        elif style == "curly":
            for i in range(7):
                a = math.pi * (i / 6)
                px, py = cx - math.cos(a) * fw * 0.9, cy - fh * 0.55 - math.sin(a) * fh * 0.5
                d.ellipse([px - fw * 0.3, py - fw * 0.3, px + fw * 0.3, py + fw * 0.3], fill=hair)
        else:
            d.chord([cx - fw * 1.05, top, cx + fw * 1.05, cy + fh * 0.2], 180, 360, fill=hair)
            if style == "side_part":
                d.polygon(
                    [(cx - fw * 1.0, cy - fh * 0.45), (cx + fw * 0.6, cy - fh * 0.95), (cx - fw * 0.9, cy - fh * 0.1)],
                    fill=hair,
                )
            if style == "short":
                d.rectangle([cx - fw * 1.0, cy - fh * 0.45, cx - fw * 0.8, cy - fh * 0.1], fill=hair)
                d.rectangle([cx + fw * 0.8, cy - fh * 0.45, cx + fw * 1.0, cy - fh * 0.1], fill=hair)
    box = (cx - fw * 1.1, cy - fh * 1.2, cx + fw * 1.1, cy + fh * 1.05)
    return layer, box


def _finish(img: Image.Image, S: int, size: int, nz: Nuisance, rng: np.random.Generator):
    """Lighting, crop, resize, noise; returns the final RGB image and the (scale, ox, oy) of the crop."""
    side = max(8, int(S * nz.crop))
    ox = int((S - side) * nz.crop_x)
    oy = int((S - side) * nz.crop_y)
    img = img.crop((ox, oy, ox + side, oy + side)).resize((size, size), Image.BILINEAR)
    if nz.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(nz.blur))
    arr = np.asarray(img, dtype=np.float32)
    ramp = 1.0 + nz.side_light * np.linspace(-0.5, 0.5, size, dtype=np.float32)[None, :, None]
    mean = arr.mean()
    arr = (arr - mean) * nz.contrast + mean
    arr = arr * nz.brightness * np.array(nz.tint, np.float32)[None, None, :] * ramp
    if nz.noise > 0:
        arr = arr + rng.normal(0, nz.noise, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), (size / side, ox, oy)


def render_face(
    ap: Appearance, nz: Nuisance, size: int, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """One image of the identity with appearance `ap` under nuisance `nz`; returns it and the face bbox."""
    S = size * SUPERSAMPLE
    canvas = _background(S, nz)
    layer, box = _person_layer(S, ap, nz)
    scaled = max(8, int(S * nz.scale))
    layer = layer.rotate(nz.roll, resample=Image.BILINEAR, center=(S * 0.5, S * 0.45))
    layer = layer.resize((scaled, scaled), Image.BILINEAR)
    px = int(S * (0.5 + nz.dx) - scaled * 0.5)
    py = int(S * (0.5 + nz.dy) - scaled * 0.5)
    canvas.paste(layer, (px, py), layer)  # paste (not alpha_composite) accepts offsets off the canvas
    img, (k, ox, oy) = _finish(canvas, S, size, nz, rng)
    f = scaled / S
    bx = [
        (px + box[0] * f - ox) * k,
        (py + box[1] * f - oy) * k,
        (px + box[2] * f - ox) * k,
        (py + box[3] * f - oy) * k,
    ]
    bbox = tuple(int(round(min(max(v, 0), size - 1))) for v in bx)
    return img, bbox  # type: ignore[return-value]


def render_scene(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[tuple[str, str]]]:
    """A generic scene without people: 1-3 coloured objects; returns the image and its (colour, object) list."""
    S = size * SUPERSAMPLE
    nz = random_nuisance(rng)
    img = _background(S, nz)
    d = ImageDraw.Draw(img)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        obj = SCENE_OBJECTS[int(rng.integers(len(SCENE_OBJECTS)))]
        cname = list(SCENE_COLOURS)[int(rng.integers(len(SCENE_COLOURS)))]
        c = SCENE_COLOURS[cname]
        x, y = (float(v) for v in rng.uniform(0.2, 0.8, 2) * S)
        r = float(rng.uniform(0.08, 0.2) * S)
        if obj in ("ball", "sun"):
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
            if obj == "sun":
                for i in range(8):
                    a = i * math.pi / 4
                    d.line(
                        [
                            x + math.cos(a) * r,
                            y + math.sin(a) * r,
                            x + math.cos(a) * r * 1.5,
                            y + math.sin(a) * r * 1.5,
                        ],
                        fill=c,
                        width=max(1, S // 60),
                    )
        elif obj == "box":
            d.rectangle([x - r, y - r, x + r, y + r], fill=c)
        elif obj == "tree":
            d.rectangle([x - r * 0.2, y, x + r * 0.2, y + r * 1.5], fill=(110, 70, 30))
            d.ellipse([x - r, y - r * 1.2, x + r, y + r * 0.4], fill=c)
        elif obj == "house":
            d.rectangle([x - r, y - r * 0.2, x + r, y + r], fill=c)
            d.polygon([(x - r * 1.2, y - r * 0.2), (x, y - r * 1.2), (x + r * 1.2, y - r * 0.2)], fill=(120, 40, 30))
        elif obj == "car":
            d.rounded_rectangle([x - r * 1.4, y - r * 0.4, x + r * 1.4, y + r * 0.4], radius=int(r * 0.3), fill=c)
            for sx in (-0.8, 0.8):
                d.ellipse([x + sx * r - r * 0.3, y + r * 0.2, x + sx * r + r * 0.3, y + r * 0.8], fill=(20, 20, 20))
        else:  # flower
            d.line([x, y, x, y + r * 1.5], fill=(40, 140, 40), width=max(1, S // 50))
            for i in range(5):
                a = i * 2 * math.pi / 5
                d.ellipse(
                    [
                        x + math.cos(a) * r * 0.5 - r * 0.35,
                        y + math.sin(a) * r * 0.5 - r * 0.35,
                        x + math.cos(a) * r * 0.5 + r * 0.35,
                        y + math.sin(a) * r * 0.5 + r * 0.35,
                    ],
                    fill=c,
                )
        objects.append((cname, obj))
    img, _ = _finish(img, S, size, nz, rng)
    return img, objects


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
