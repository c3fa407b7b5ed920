"""Presets for `idia run`: named sets of stage keys a pipeline config starts from (`preset: study` or `--preset`).

A preset fills the sections under the config's own keys: the config file wins over the preset, `--set` over both.
`study` is the study's LAION-400M experiment as its code ran it (see ../PAPER.md and the resources' README): each
key says which row of the study it reproduces. It names no inputs (shards, names, query sources) and no cluster.
"""

from __future__ import annotations

from idia.attack.decision import DEFAULT_KS
from idia.core.census import RESOURCES
from idia.core.config import ConfigError

STUDY_DIR = RESOURCES / "study"
#: The study's German TV personalities: a folder of <Name>.txt URL lists (a query source).
STUDY_GERMAN_QUERIES = STUDY_DIR / "laion_european_celebs"
STUDY_NAME_FIXES = STUDY_DIR / "facescrub_name_fixes.csv"

STUDY = {
    "mine": {
        "match": "paper",  # pandas str.contains(name): a case-sensitive regex search of the raw caption
        "also_count": ["normalized"],  # reported beside the ground truth as a second column, never replacing it
        "member_min": 1,  # member if count >= 1
        "member_max": 300,  # evaluated: members seen fewer than 300 times
    },
    "download": {
        "crop_to_bbox": False,  # FaceScrub loaded with cropped=False: whole photos
        "query_aliases": str(STUDY_NAME_FIXES),  # FaceScrub's four misspelled names, fixed as the study did
    },
    "attack": {
        "precision": "fp32",  # no autocast, no half precision
        "k": list(DEFAULT_KS),  # 1, 3, ..., 29, 30
        "draws": 20,
        "tau": 1,
        "min_images": 30,  # people with fewer than 30 query images dropped
        "num_candidates": 1000,
        "fake_names": "study",  # SSA baby first names x 2010 surnames, (1000 - n) / 2 per sex
        "seed": 42,  # its pandas random_state for the fakes
    },
    "evaluate": {"eval_subset": True},  # members with count < 300, plus the non-members
    "headline_k": 30,  # its final metrics at k = 30
}

PRESETS = {"study": STUDY}


def apply_preset(data: dict, name: str | None) -> dict:
    """`data` (a raw pipeline config) over the preset's sections; the config's own keys win."""
    if not name:
        return data
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r}: unknown; choose from {', '.join(sorted(PRESETS))}")
    out = dict(data)
    for key, value in PRESETS[name].items():
        if isinstance(value, dict):
            out[key] = {**value, **(data.get(key) or {})}
        elif key not in data:
            out[key] = value
    return out
