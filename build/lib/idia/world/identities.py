"""Fictional identities for the synthetic world: a generated name (first name + census surname) and a face-like
appearance of their own, drawn deterministically from a seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from idia.core import census
from idia.core.census import SEXES

# Palettes are wide on purpose: identities must be told apart at 64 px by a tiny model.
SKIN_TONES = [
    (255, 224, 196),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (171, 112, 62),
    (141, 85, 36),
    (110, 66, 34),
    (255, 205, 178),
    (234, 192, 134),
    (92, 56, 30),
]
HAIR_COLOURS = [
    (20, 20, 20),
    (60, 40, 25),
    (110, 70, 35),
    (170, 120, 60),
    (230, 200, 120),
    (160, 50, 20),
    (200, 200, 200),
    (120, 120, 125),
    (250, 240, 210),
    (80, 30, 80),
    (30, 60, 140),
    (200, 60, 110),
]
EYE_COLOURS = [(60, 40, 20), (40, 90, 160), (50, 120, 60), (100, 100, 110), (20, 20, 20)]
SHIRT_COLOURS = [
    (200, 30, 30),
    (30, 120, 200),
    (40, 160, 60),
    (230, 190, 30),
    (120, 40, 160),
    (240, 120, 20),
    (20, 20, 20),
    (240, 240, 240),
    (0, 150, 150),
    (150, 90, 40),
    (230, 90, 160),
    (90, 90, 90),
]
HAIR_STYLES = ("short", "long", "bald", "bun", "curly", "mohawk", "side_part", "bob")


@dataclass(frozen=True)
class Appearance:
    """What makes one identity look like itself; every image of it is rendered from these."""

    face_w: float  # face ellipse half-width, fraction of the face box
    face_h: float  # face ellipse half-height
    jaw: float  # 0 round .. 1 square chin
    skin: tuple[int, int, int]
    hair_colour: tuple[int, int, int]
    hair_style: str
    eye_spacing: float  # fraction of face width
    eye_size: float
    eye_colour: tuple[int, int, int]
    brow_thickness: float
    nose_len: float
    mouth_w: float
    glasses: bool
    glasses_colour: tuple[int, int, int]
    beard: bool
    shirt_colour: tuple[int, int, int]
    earrings: bool

    def to_json(self) -> dict:
        return asdict(self)


def random_appearance(rng: np.random.Generator, sex: str) -> Appearance:
    def pick(seq):
        return (
            tuple(seq[int(rng.integers(len(seq)))]) if isinstance(seq[0], tuple) else seq[int(rng.integers(len(seq)))]
        )

    styles = HAIR_STYLES if sex == "f" else tuple(s for s in HAIR_STYLES if s not in ("bun", "bob"))
    return Appearance(
        face_w=float(rng.uniform(0.26, 0.38)),
        face_h=float(rng.uniform(0.34, 0.44)),
        jaw=float(rng.uniform(0, 1)),
        skin=pick(SKIN_TONES),
        hair_colour=pick(HAIR_COLOURS),
        hair_style=pick(styles),
        eye_spacing=float(rng.uniform(0.28, 0.5)),
        eye_size=float(rng.uniform(0.05, 0.11)),
        eye_colour=pick(EYE_COLOURS),
        brow_thickness=float(rng.uniform(0.01, 0.05)),
        nose_len=float(rng.uniform(0.08, 0.2)),
        mouth_w=float(rng.uniform(0.2, 0.45)),
        glasses=bool(rng.random() < 0.3),
        glasses_colour=pick([(10, 10, 10), (150, 20, 20), (20, 20, 150), (180, 150, 40)]),
        beard=bool(sex == "m" and rng.random() < 0.35),
        shirt_colour=pick(SHIRT_COLOURS),
        earrings=bool(sex == "f" and rng.random() < 0.4),
    )


@dataclass(frozen=True)
class Person:
    """One fictional person. `identity_id` is path-safe; the name never becomes a path."""

    identity_id: str
    name: str
    sex: str
    appearance: Appearance


def _conflicts(name: str, taken: list[str]) -> bool:
    # No name may contain another (either way, case-insensitively): caption mining matches substrings, so
    # "Ann Lee" inside "Ann Leeds" would make a non-member look like a member.
    low = name.lower()
    return any(low in t or t in low for t in taken)


def look(appearance: Appearance) -> tuple:
    """What tells two faces apart at a glance in the tiny model's 64 px: skin, hair colour and hair style."""
    return (appearance.skin, appearance.hair_colour, appearance.hair_style)


def generate_people(
    n: int, seed: int, prefix: str = "w", first_top: int = 1000, surname_top: int = 1000, distinct_looks: bool = False
) -> list[Person]:
    """`n` people with unique, mutually non-overlapping fictional names and their appearances. `distinct_looks`:
    no two share skin, hair colour and hair style (look-alikes made some members of a small world unlearnable)."""
    rng = np.random.default_rng([seed, 0x1D1A])
    firsts = {s: census.first_names(s, first_top) for s in SEXES}
    surnames = census.surnames(surname_top)
    people: list[Person] = []
    taken: list[str] = []
    looks: set[tuple] = set()
    width = max(4, len(str(n - 1)))
    while len(people) < n:
        sex = SEXES[int(rng.integers(2))]
        name = f"{firsts[sex][int(rng.integers(len(firsts[sex])))]} {surnames[int(rng.integers(len(surnames)))]}"
        if _conflicts(name, taken):
            continue
        taken.append(name.lower())
        idx = len(people)
        appearance = random_appearance(rng, sex)
        for _ in range(100):  # 10 skins x 12 hair colours x 6-8 styles: a distinct look is found in a few draws
            if not distinct_looks or look(appearance) not in looks:
                break
            appearance = random_appearance(rng, sex)
        looks.add(look(appearance))
        people.append(Person(f"{prefix}{idx:0{width}d}", name, sex, appearance))
    return people
