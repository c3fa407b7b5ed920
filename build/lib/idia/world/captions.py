"""Web-like captions for the synthetic world: varied wordings that name a member, and a larger body of captions
that name nobody (unnamed people described by their looks, generic scenes)."""

from __future__ import annotations

import numpy as np

from idia.world.identities import EYE_COLOURS, HAIR_COLOURS, SHIRT_COLOURS, Appearance

# Colour words for the appearance palettes (same order as the palettes in identities.py).
HAIR_WORDS = [
    "black",
    "dark brown",
    "brown",
    "light brown",
    "blonde",
    "red",
    "grey",
    "grey",
    "platinum",
    "purple",
    "blue",
    "pink",
]
SHIRT_WORDS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "teal", "brown", "pink", "grey"]
assert len(HAIR_WORDS) == len(HAIR_COLOURS) and len(SHIRT_WORDS) == len(SHIRT_COLOURS) and EYE_COLOURS

EVENTS = [
    "film festival",
    "premiere",
    "gala",
    "awards ceremony",
    "charity dinner",
    "press conference",
    "fashion week",
    "book signing",
    "music awards",
    "launch party",
    "red carpet event",
    "talk show",
]
CITIES = ["Berlin", "Toronto", "Los Angeles", "New York", "London", "Cannes", "Venice", "Sydney", "Madrid", "Tokyo"]
SITES = ["Getty Images", "Alamy", "Wikimedia Commons", "IMDb", "Pinterest", "Shutterstock", "Fanpop", "Zimbio"]

# {n} = full name; {role} = actor/actress; {ev}/{city}/{site}/{year}/{shirt} filled at random.
NAMED_TEMPLATES = [
    "{n}",
    "{n} attends the {year} {ev} in {city}",
    "Photo of {n} at the {ev}",
    "{n} poses for photographers at the {ev}",
    "{role} {n} arrives at the {ev} in {city}",
    "Portrait of {n}",
    "{n} - Stock Photo",
    "{n} | {site}",
    "{n} wearing a {shirt} shirt",
    "Close-up of {n} smiling",
    "{n} ({year})",
    "{n} speaks during an interview",
    "{n} Net Worth, Age, Height, Bio",
    "Image may contain: {n}, smiling",
    "{role} {n} photographed in {city}, {year}",
    "A picture of {n} at home",
    "{n} at the {year} {ev}. Photo: {site}",
    "New headshot of {n}",
    "{n} on set",
    "Fans spotted {n} in {city}",
]

UNNAMED_PERSON_TEMPLATES = [
    "a {man} with {hair} {style} hair",
    "portrait of a smiling {man}",
    "stock photo of a {man} in a {shirt} shirt",
    "headshot of a {man} with {hair} hair",
    "{man} looking at the camera",
    "close-up of a {man}{glasses}",
    "a {man}{beard} wearing a {shirt} top",
    "profile picture",
    "happy {man} portrait, {shirt} background",
    "young {man} with {style} {hair} hair{glasses}",
    "photo of a person",
    "unknown {man} at a party",
]

SCENE_TEMPLATES = [
    "a {things}",
    "photo of a {things}",
    "{things} on a colourful background",
    "clip art of a {things}",
    "illustration: {things}",
    "a simple drawing of a {things}",
]

STYLE_WORDS = {
    "short": "short",
    "long": "long",
    "bald": "shaved",
    "bun": "tied",
    "curly": "curly",
    "mohawk": "mohawk",
    "side_part": "parted",
    "bob": "bob",
}


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def named_caption(rng: np.random.Generator, name: str, sex: str, ap: Appearance) -> str:
    tpl = _pick(rng, NAMED_TEMPLATES)
    return tpl.format(
        n=name,
        role="Actor" if sex == "m" else "Actress",
        ev=_pick(rng, EVENTS),
        city=_pick(rng, CITIES),
        site=_pick(rng, SITES),
        year=int(rng.integers(2005, 2022)),
        shirt=SHIRT_WORDS[_colour_index(SHIRT_COLOURS, ap.shirt_colour)],
    )


def _colour_index(palette, colour) -> int:
    return [tuple(c) for c in palette].index(tuple(colour))


def unnamed_person_caption(rng: np.random.Generator, sex: str, ap: Appearance) -> str:
    tpl = _pick(rng, UNNAMED_PERSON_TEMPLATES)
    man = ("man" if rng.random() < 0.7 else "guy") if sex == "m" else ("woman" if rng.random() < 0.7 else "lady")
    return tpl.format(
        man=man,
        hair=HAIR_WORDS[_colour_index(HAIR_COLOURS, ap.hair_colour)],
        style=STYLE_WORDS[ap.hair_style],
        shirt=SHIRT_WORDS[_colour_index(SHIRT_COLOURS, ap.shirt_colour)],
        glasses=" with glasses" if ap.glasses else "",
        beard=" with a beard" if ap.beard else "",
    )


def scene_caption(rng: np.random.Generator, objects: list[tuple[str, str]]) -> str:
    things = " and a ".join(f"{c} {o}" for c, o in objects)
    return _pick(rng, SCENE_TEMPLATES).format(things=things)
