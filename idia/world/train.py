"""Train the tiny CLIP on the synthetic world's caption shards: an open_clip architecture from a small model_cfg,
open_clip's ClipLoss, the project's own short seeded loop; saved in open_clip's `local-dir:` format.

A seeded share of the rows that name nobody (unnamed people, scenes) is held out of training; every `eval_every`
steps the model's image->text retrieval among those captions is scored, the scores and the mean loss between them
go to the model folder's train.json (`heldout`). `select_best` saves the best-scoring evaluation's weights instead of
the last step's, `early_stop_patience` stops a run whose score no longer improves; both are off by default, as the
score (generic captions, 220 of them in the demo) is too noisy to pick steps by (BENCHMARKS.md, issue 16). Members'
training images are never held out, so the world's truth (training images per identity) stays exact."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq

from idia.core.atomic import atomic_dir, atomic_path
from idia.core.config import ConfigError, from_dict, option, to_dict
from idia.core.errors import InputFileError
from idia.core.provenance import provenance
from idia.core.resume import StageFolder
from idia.core.stats import Stats, check_sum
from idia.evaluate.plots import loss_curve
from schemas import files

WEIGHTS_FILE = "open_clip_model.safetensors"  # the first name open_clip's local-dir: loader looks for
CONFIG_FILE = "open_clip_config.json"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TrainConfig:
    """Tiny CLIP training. Defaults are the end-to-end demo's; PRESETS["reduced"] is the test-suite run."""

    seed: int = option(0, help="seed of initialisation and batch order")
    steps: int = option(1600, help="optimizer steps")
    batch_size: int = option(128, help="image-caption pairs per step")
    lr: float = option(2e-3, help="peak learning rate (cosine schedule after warm-up)")
    weight_decay: float = option(0.1, help="AdamW weight decay (matrices only)")
    warmup_steps: int = option(50, help="linear learning-rate warm-up steps")
    embed_dim: int = option(128, help="joint embedding width")
    image_size: int = option(64, help="input image side, pixels")
    patch_size: int = option(
        16, help="ViT patch side (16 at 64 px: 4x4 patches, ~4x cheaper than 8; the faces' cues are colours and shapes)"
    )
    vision_width: int = option(128, help="vision transformer width")
    vision_layers: int = option(3, help="vision transformer layers")
    vision_head_width: int = option(32, help="vision attention head width")
    text_width: int = option(128, help="text transformer width")
    text_layers: int = option(2, help="text transformer layers")
    text_heads: int = option(4, help="text attention heads")
    context_length: int = option(
        24,
        help="text tokens per caption (the world's captions are at most 20 tokens and the attack's prompts at most "
        "15, with SOT/EOT; a longer caption is cut, its last token made EOT, as open_clip's tokenizer does; "
        "24 instead of 32 makes a step ~20% cheaper)",
    )
    threads: int = option(
        2,
        execution=True,
        help="torch CPU threads (the weights depend on it: another count sums in another order, and models trained "
        "at 1 and 2 threads drift apart after the first steps; resume a killed run at the same count)",
    )
    checkpoint_every: int = option(100, execution=True, help="steps between resume checkpoints (0: none)")
    augment: bool = option(
        True,
        help="identity-keeping augmentation per step: a random crop of 80-100% of the "
        "image resized back, and brightness and contrast jitter of up to 10%",
    )
    holdout_fraction: float = option(
        0.05,
        help="share of the caption rows that name nobody (unnamed people, scenes) held out of training, seeded, "
        "for the held-out caption-retrieval score; members' training images are never held out (0: no score)",
    )
    eval_every: int = option(
        100, help="steps between held-out caption-retrieval evaluations (and one at the last step)"
    )
    select_best: bool = option(
        False,
        help="save the weights of the evaluation with the best held-out image->text top-1 (the latest on ties) "
        "instead of the last step's (off: on seeds 2 and 3 it picked step 1000 of 1200, and the attack found "
        "fewer members than with the last step's weights; BENCHMARKS.md)",
    )
    early_stop_patience: int = option(
        0, help="stop after this many evaluations without a better held-out score (0: always train every step)"
    )

    def validate(self) -> None:
        for k in (
            "steps",
            "batch_size",
            "embed_dim",
            "image_size",
            "patch_size",
            "vision_width",
            "vision_layers",
            "text_width",
            "text_layers",
            "text_heads",
            "context_length",
            "threads",
            "eval_every",
        ):
            if getattr(self, k) < 1:
                raise ConfigError(f"train config: {k} must be >= 1, got {getattr(self, k)}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"train config: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.vision_width % self.vision_head_width or self.text_width % self.text_heads:
            raise ConfigError("train config: widths must be multiples of the head width / head count")
        if not 0 <= self.holdout_fraction < 1:
            raise ConfigError(f"train config: holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.early_stop_patience < 0:
            raise ConfigError(f"train config: early_stop_patience must be >= 0, got {self.early_stop_patience}")

    def model_cfg(self) -> dict:
        """open_clip model_cfg (the same dict open_clip's built-in JSON configs hold)."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.vision_width,
                "layers": self.vision_layers,
                "head_width": self.vision_head_width,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": 49408,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }

    def preprocess_cfg(self) -> dict:
        return {
            "size": self.image_size,
            "mode": "RGB",
            "mean": list(OPENAI_MEAN),
            "std": list(OPENAI_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            "fill_color": 0,
        }


PRESETS: dict[str, TrainConfig] = {
    "demo": TrainConfig(),
    "reduced": TrainConfig(
        steps=150,
        batch_size=32,
        warmup_steps=10,
        lr=3e-3,
        embed_dim=64,
        vision_width=96,
        vision_layers=2,
        vision_head_width=48,
        text_width=64,
        text_layers=2,
        text_heads=2,
        checkpoint_every=0,
        threads=1,
        augment=False,
        holdout_fraction=0.0,  # the test suite's pipeline trains on every row; tests/world checks the score
    ),
}


def _train_hash(cfg: TrainConfig, world_key: str) -> str:
    d = to_dict(cfg)
    for k in ("threads", "checkpoint_every"):  # do not change the result
        d.pop(k)
    d["world"] = world_key
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _world_key(world_dir: Path) -> str:
    """What identifies the world's content: its image hash (the base URL does not change what is trained on)."""
    wj = world_dir / files.WORLD_JSON
    if not wj.exists():
        raise InputFileError(f"{world_dir}: not a world folder (world.json missing); run `idia world` first")
    from idia.world.generate import WorldConfig, image_hash

    cfg = json.loads(wj.read_text())["config"]
    return image_hash(from_dict(WorldConfig, cfg, str(wj)))


def load_world_pairs(world_dir: str | Path, preprocess, stats: Stats, progress: bool = True):
    """(images tensor, captions, sample ids) for every caption row whose image file is in the world folder.

    Rows whose image is missing (the world's dead links) are skipped and counted; rows are read in shard order.
    """
    import torch
    from PIL import Image
    from tqdm import tqdm

    world_dir = Path(world_dir)
    shards = sorted((world_dir / "laion").glob("part-*.parquet"))
    if not shards:
        raise InputFileError(f"{world_dir / 'laion'}: no part-*.parquet caption shards")
    urls, texts, ids = [], [], []
    for s in shards:
        t = pq.read_table(s, columns=["SAMPLE_ID", "URL", "TEXT"])
        urls += t.column("URL").to_pylist()
        texts += t.column("TEXT").to_pylist()
        ids += t.column("SAMPLE_ID").to_pylist()
    stats["rows_read"] += len(urls)
    images, captions, used_ids = [], [], []
    for sid, url, text in tqdm(list(zip(ids, urls, texts)), desc="load images", disable=not progress):
        if not url or not text:
            stats["skipped_null"] += 1
            continue
        path = world_dir / urlsplit(url).path.lstrip("/")
        if not path.is_file():
            stats["skipped_missing_image"] += 1
            continue
        with Image.open(path) as im:
            images.append(preprocess(im.convert("RGB")).to(torch.float16))  # half the memory; cast per batch
        captions.append(text)
        used_ids.append(sid)
        stats["rows_used"] += 1
    check_sum(
        stats["rows_read"],
        {k: stats[k] for k in ("rows_used", "skipped_null", "skipped_missing_image")},
        "training rows",
    )
    if not images:
        raise InputFileError(f"{world_dir}: no caption row has an image on disk")
    return torch.stack(images), captions, used_ids


def holdout_rows(world_dir: str | Path, sample_ids: list[int], fraction: float, seed: int) -> list[int]:
    """Positions (into `sample_ids`) of the held-out pairs: a seeded `fraction` of the rows that name nobody
    (unnamed people and scenes, per the world's own plan), so no member loses a training image and the truth stays
    exact. Sorted; the same world, fraction and seed give the same rows."""
    import numpy as np

    if fraction <= 0:
        return []
    from idia.world.generate import NAMED, SAMPLE_ID_BASE, WorldConfig, plan_world

    wj = Path(world_dir) / files.WORLD_JSON
    plan = plan_world(from_dict(WorldConfig, json.loads(wj.read_text())["config"], str(wj)))
    eligible = [i for i, sid in enumerate(sample_ids) if plan.rows[sid - SAMPLE_ID_BASE][0] != NAMED]
    m = min(len(eligible), max(2, round(fraction * len(eligible))))
    if m < 2:
        return []
    pick = np.random.default_rng([seed, 0x4E1D]).choice(len(eligible), size=m, replace=False)
    return sorted(eligible[int(j)] for j in pick)


def retrieval_scores(model, images, tokens, text_ids, chunk: int = 256) -> dict:
    """Image->text retrieval among the held-out captions: top-1 and recall@5, a hit being a caption with the
    image's own text (identical captions cannot be told apart, so any of them counts)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        img = torch.cat(
            [model.encode_image(images[i : i + chunk].float(), normalize=True) for i in range(0, len(images), chunk)]
        )
        txt = torch.cat(
            [model.encode_text(tokens[i : i + chunk], normalize=True) for i in range(0, len(tokens), chunk)]
        )
        top = (img @ txt.T).topk(min(5, len(txt)), dim=1).indices
    model.train(was_training)
    ids = torch.as_tensor(text_ids)
    hit = ids[top] == ids[:, None]
    return {"top1": round(float(hit[:, 0].float().mean()), 4), "recall5": round(float(hit.any(1).float().mean()), 4)}


def augment_batch(x, gen):
    """Identity-keeping augmentation of a normalised image batch [B, C, H, W]: one random crop (80-100% of the side,
    anywhere) resized back, and a brightness shift and contrast scale of up to 10% per image. Seeded by `gen`."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    side = int(h * (0.8 + 0.2 * float(torch.rand(1, generator=gen))))
    top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    x = F.interpolate(x[:, :, top : top + side, left : left + side], size=(h, w), mode="bilinear", align_corners=False)
    scale = 1 + 0.1 * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    shift = 0.1 * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * scale + mean + shift


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def train_folder(cfg: TrainConfig, out_dir: Path, world_key: str, force: bool = False) -> StageFolder:
    """The model folder under the resume policy: pinned to the training settings and the world's content."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in ("threads", "checkpoint_every")} | {
        "world": world_key
    }
    return StageFolder(out_dir, "train", settings, force, type(cfg))


def train_tiny_clip(
    cfg: TrainConfig, world_dir: str | Path, out_dir: str | Path, progress: bool = True, force: bool = False
) -> dict:
    """Train on the world in `world_dir`, save a `local-dir:` model folder at `out_dir`; returns its summary.

    Skips when `out_dir` holds a model trained with the same config on the same world. A killed run resumes from
    its last checkpoint (kept beside `out_dir` until the model is saved).
    """
    import open_clip
    import torch
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP
    from safetensors.torch import save_file
    from tqdm import tqdm

    cfg.validate()
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    world_key = _world_key(world_dir)
    thash = _train_hash(cfg, world_key)
    folder = train_folder(cfg, out_dir, world_key, force)
    folder.check()
    info_path = out_dir / files.TRAIN_JSON
    if folder.done() and info_path.exists() and (out_dir / WEIGHTS_FILE).exists():
        info = json.loads(info_path.read_text())
        info["skipped"] = True
        folder.release()
        return info

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    model = CLIP(**cfg.model_cfg())
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = image_transform_v2(PreprocessCfg(**cfg.preprocess_cfg()), is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg.context_length)

    stats = Stats()
    all_images, captions, sample_ids = load_world_pairs(world_dir, preprocess, stats, progress)
    all_tokens = tokenizer(captions)
    held = holdout_rows(world_dir, sample_ids, cfg.holdout_fraction, cfg.seed)
    held_idx = torch.tensor(held, dtype=torch.long)
    keep = torch.ones(len(captions), dtype=torch.bool)
    keep[held_idx] = False
    ho_images, ho_tokens = all_images[held_idx], all_tokens[held_idx]
    images, tokens = all_images[keep], all_tokens[keep]
    del all_images
    text_index: dict[str, int] = {}
    ho_text_ids = [text_index.setdefault(captions[i], len(text_index)) for i in held]
    stats["heldout_pairs"] = len(held)
    n = len(images)
    batch = min(cfg.batch_size, n)
    t_load = time.time() - t0

    loss_fn = ClipLoss()
    decay = [p for nme, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in nme]
    no_decay = [p for nme, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in nme)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        fused=True,  # one kernel per group: the per-tensor update (6.3M-parameter token embedding) took ~28 ms a step, fused ~6
    )
    gen = torch.Generator().manual_seed(cfg.seed)

    partial = out_dir.parent / f".{out_dir.name}.partial"
    ckpt = partial / "checkpoint.pt"
    losses: list[float] = []
    evals: list[dict] = []  # per evaluation: step, held-out top-1 and recall@5, mean loss since the last one
    best: dict | None = None  # the best evaluation's step, score and weights (select_best)
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file, holds RNG state
        if state.get("hash") == thash:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
            torch.set_rng_state(state["torch_rng"])
            losses, start = state["losses"], state["step"]
            evals, best = state["evals"], state["best"]
            stats["resumed_from_step"] = start

    perm, pos = None, n  # epoch permutation and position in it
    if start:
        perm, pos = state["perm"], state["pos"]
    model.train()
    stopped_at = None
    bar = tqdm(range(start, cfg.steps), desc="train", initial=start, total=cfg.steps, disable=not progress)
    for step in bar:
        if pos + batch > n:  # new epoch: reshuffle, drop the ragged tail
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + batch]
        pos += batch
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        x = images[idx].float()
        if cfg.augment:
            x = augment_batch(x, gen)
        img_f = model.encode_image(x, normalize=True)
        txt_f = model.encode_text(tokens[idx], normalize=True)
        loss = loss_fn(img_f, txt_f, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # as in CLIP: keep the temperature from running away
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if held and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            since = losses[evals[-1]["step"] if evals else 0 :]
            ev = {"step": step + 1, **retrieval_scores(model, ho_images, ho_tokens, ho_text_ids)}
            evals.append(ev | {"loss": round(sum(since) / len(since), 4)})
            if cfg.select_best and (best is None or ev["top1"] >= best["top1"]):
                best = ev | {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            if cfg.early_stop_patience and sum(e["step"] > _best_step(evals) for e in evals) >= cfg.early_stop_patience:
                stopped_at = step + 1
        if (
            stopped_at is None
            and cfg.checkpoint_every
            and (step + 1) % cfg.checkpoint_every == 0
            and step + 1 < cfg.steps
        ):
            partial.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt) as tmp:
                torch.save(
                    {
                        "hash": thash,
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "gen": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "losses": losses,
                        "step": step + 1,
                        "perm": perm,
                        "pos": pos,
                        "evals": evals,
                        "best": best,
                    },
                    tmp,
                )
        if stopped_at is not None:
            break
    bar.close()
    t_train = time.time() - t0 - t_load
    if best is not None:
        model.load_state_dict(best["model"])

    model.eval()
    first = sum(losses[: max(1, len(losses) // 10)]) / max(1, len(losses[: max(1, len(losses) // 10)]))
    last = sum(losses[-max(1, len(losses) // 10) :]) / max(1, len(losses[-max(1, len(losses) // 10) :]))
    info = {
        "hash": thash,
        "config": to_dict(cfg),
        "world": str(world_dir),
        "model_spec": f"local-dir:{out_dir}",
        "n_pairs": n,
        "steps_run": len(losses),
        "epochs": round(len(losses) * batch / n, 2),
        "heldout": {
            "pairs": len(held),
            "score": "image->text top-1 and recall@5 among the held-out captions",
            "evals": evals,
            "best_step": _best_step(evals) if evals else None,
            "best_top1": max((e["top1"] for e in evals), default=None),
            "saved_step": best["step"] if best is not None else len(losses),
            "early_stopped_at": stopped_at,
        },
        "loss_first_10pct": round(first, 4),
        "loss_last_10pct": round(last, 4),
        "load_seconds": round(t_load, 1),
        "train_seconds": round(t_train, 1),
        "stats": stats.to_dict(),
    }
    with atomic_dir(out_dir) as tmp:
        (tmp / CONFIG_FILE).write_text(
            json.dumps({"model_cfg": cfg.model_cfg(), "preprocess_cfg": cfg.preprocess_cfg()}, indent=2) + "\n"
        )
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        (tmp / "losses.json").write_text(json.dumps([round(v, 5) for v in losses]) + "\n")
        loss_curve(losses, tmp / "loss.png")
        (tmp / files.CONFIG_JSON).write_text(
            json.dumps({**to_dict(cfg), "provenance": provenance()}, indent=2, sort_keys=True) + "\n"
        )
        (tmp / "train.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        _verify_loads(tmp, model, cfg)
        train_folder(cfg, tmp, world_key).mark_done(info={"hash": thash})
    folder.release()  # the lock was taken on out_dir, which the finished folder has just replaced
    if ckpt.exists():
        ckpt.unlink()
        partial.rmdir()
    info["skipped"] = False
    return info


def _best_step(evals: list[dict]) -> int:
    """The step of the best held-out top-1 (the latest on ties)."""
    return max(evals, key=lambda e: (e["top1"], e["step"]))["step"]


def _verify_loads(folder: Path, model, cfg: TrainConfig) -> None:
    """Load the saved folder the way any open_clip user would and check it computes what we trained."""
    import open_clip
    import torch

    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    loaded.eval()
    tok = open_clip.get_tokenizer(f"local-dir:{folder}")(["a photo of a person"])
    x = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        same = torch.allclose(loaded.encode_text(tok), model.encode_text(tok), atol=1e-5) and torch.allclose(
            loaded.encode_image(x), model.encode_image(x), atol=1e-5
        )
    if not same:
        raise RuntimeError(f"{folder}: the saved model does not reproduce the trained one after loading")
