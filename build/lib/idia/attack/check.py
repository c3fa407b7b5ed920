"""`idia check`: does this model know MY face? The IDIA for one person, from their own photos.

The person's name among seeded fake candidates (of the sex they give, or of both), the study's 21 templates, every
photo embedded once; per template the plurality name over the k photos (a tie is not correct); "member" when at
least tau templates name the person. In one process, no engine: seconds for a small model on a CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import schemas
from idia.attack import decision
from idia.attack.candidates import build_candidates
from idia.attack.images import IMAGE_EXTENSIONS
from idia.attack.models import ModelSpec, cached_model, local_device
from idia.attack.prompts import load_templates
from idia.core.config import ConfigError, option
from idia.core.errors import InputFileError, UserError
from idia.mine.names import derive_identity_id, normalize_name


@dataclass
class CheckConfig:
    name: str = option("", required=True, help="the person's full name, as it would appear in captions")
    photos: str = option("", required=True, help="folder of the person's photos (jpg, png, webp, bmp)")
    model: list[str] = option(
        default_factory=list,
        required=True,
        metavar="SPEC",
        help="open_clip model(s): built-in architecture (with --pretrained), hf-hub:org/repo "
        "or local-dir:/path; several are checked one after another",
    )
    pretrained: str | None = option(None, help="pretrained tag or checkpoint file for built-in architectures")
    sex: str | None = option(None, choices=("m", "f"), help="draw fake candidates of this sex (default: both)")
    k: int | None = option(None, help="photos per attack (default: all); with fewer than all, --draws random draws")
    draws: int = option(20, help="random draws of k photos when k is less than all")
    tau: int = option(1, help="member if at least tau templates name the person")
    num_candidates: int = option(1000, help="candidate names: the person plus seeded fake names")
    seed: int = option(0, help="seed of the fake names and the draws")
    templates: str | None = option(None, help="prompt templates file (default: the study's 21)")
    mine: str | None = option(None, help="a mining run: add how often the name is in its captions")
    cache_dir: str | None = option(None, help="text-embedding cache folder (default ~/.cache/idia/text_embeddings)")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")

    def validate(self) -> None:
        for key in ("name", "photos", "model"):
            if not getattr(self, key):
                raise ConfigError(f"check: {key} is required (--{key})")
        if self.sex not in (None, "m", "f"):
            raise ConfigError(f"check: sex must be m or f, got {self.sex!r}")
        for key in ("draws", "tau", "num_candidates"):
            if getattr(self, key) < 1:
                raise ConfigError(f"check: {key} must be >= 1")
        if self.k is not None and self.k < 1:
            raise ConfigError("check: k must be >= 1")


def read_photos(folder: str | Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The photos of a folder that decode, and the ones that do not (file name, reason)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: photos folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    ok, bad = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
            ok.append(p)
        except Exception as exc:  # PIL raises many types for a corrupt or truncated file
            bad.append((p.name, f"{type(exc).__name__}: {exc}"[:120]))
    return ok, bad


def check_person(cfg: CheckConfig, model: str) -> dict:
    """The IDIA for one person and one model; returns the verdict with the per-template plurality names."""
    from PIL import Image

    from idia.attack.embeddings import embed_images, text_embeddings
    from idia.attack.stage import DEFAULT_CACHE

    t0 = time.perf_counter()
    name = normalize_name(cfg.name, "--name", 1)
    if not name:
        raise UserError("check: --name is empty")
    photos, unreadable = read_photos(cfg.photos)
    need = cfg.k or 1
    if len(photos) < need:
        extra = f"; unreadable: {', '.join(f'{n} ({r})' for n, r in unreadable[:5])}" if unreadable else ""
        raise InputFileError(f"{cfg.photos}: {len(photos)} readable photo(s), the check needs at least {need}{extra}")
    person = pa.table(
        {
            "identity_id": [derive_identity_id(name)],
            "name": [name],
            "aliases": pa.array([[]], pa.list_(pa.string())),
            "sex": [cfg.sex],
            "source_line": pa.array([1], pa.int32()),
        },
        schema=schemas.IDENTITIES,
    )
    cands = build_candidates(person, cfg.num_candidates, cfg.seed)
    names = cands.column("name").to_pylist()
    true_index = 0  # the person's own name is the first candidate
    templates = load_templates(cfg.templates)
    spec = ModelSpec(model, cfg.pretrained, 0, local_device(cfg.device), "fp32")
    m, preprocess, tokenizer = cached_model(spec)
    # The fake names are the same for every person of a sex (but for a fake that would share the person's name): their
    # prompts come from the cache after the first check; only the person's own prompts are embedded each time.
    cache = cfg.cache_dir or str(DEFAULT_CACHE)
    fakes, _ = text_embeddings(m, tokenizer, templates, names[1:], cache, device=spec.device, precision=spec.precision)
    own, _ = text_embeddings(m, tokenizer, templates, names[:1], None, device=spec.device, precision=spec.precision)
    text = np.concatenate([own, fakes], axis=1)
    items = [(p.name, (lambda p=p: Image.open(p))) for p in photos]
    keys, emb, failed, _ = embed_images(m, preprocess, items, 64, spec.device, spec.precision)
    preds = decision.predict(emb, text)  # [n photos, T]
    n = len(keys)
    k = min(cfg.k or n, n)
    per_template = []
    for t, template in enumerate(templates):
        votes = np.bincount(preds[:, t], minlength=len(names))
        top = int(votes.argmax())
        tie = int((votes == votes[top]).sum()) > 1
        per_template.append(
            {
                "template": template,
                "plurality": None if tie else names[top],
                "votes": int(votes[top]),
                "correct": bool(not tie and top == true_index),
            }
        )
    if k == n:  # every photo at once: one attack
        correct = int(decision.correct_templates(preds[None], true_index).sum())
        member_rate = float(correct >= cfg.tau)
    else:  # seeded draws of k photos, as the study's attack
        res = decision.attack_identity(
            preds, true_index, person["identity_id"][0].as_py(), [k], cfg.draws, cfg.seed, cfg.tau
        )
        correct = float(res["correct_templates"].mean())
        member_rate = float(res["predicted_member"].mean())
    out = {
        "name": name,
        "model": model,
        "photos": n,
        "unreadable": len(unreadable) + len(failed),
        "k": k,
        "draws": 1 if k == n else cfg.draws,
        "candidates": len(names),
        "templates": len(templates),
        "correct_templates": correct,
        "member_rate": member_rate,
        "verdict": "member" if member_rate > 0.5 else "not member",
        "per_template": per_template,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if cfg.mine:
        from idia.mine.lookup import lookup

        hits = lookup(cfg.mine, name, rows=0)
        out["captions"] = hits[0]["n_captions"] if hits else 0
    return out
