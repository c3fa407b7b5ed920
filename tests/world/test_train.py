"""Tiny CLIP training: a few steps on a small world save a model that open_clip loads with `local-dir:`, computes
the same embeddings, and whose loss went down; reruns skip; a run killed after a checkpoint resumes to the same
weights; the held-out caption-retrieval pairs name nobody and are never trained on, and the saved weights are the
best-scoring evaluation's."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from idia.world.generate import PRESETS as WORLD_PRESETS
from idia.world.generate import generate_world
from idia.world.train import PRESETS as TRAIN_PRESETS
from idia.world.train import WEIGHTS_FILE, train_tiny_clip

WORLD = dataclasses.replace(
    WORLD_PRESETS["reduced"],
    n_main=6,
    main_images=12,
    sweep_images=[2],
    n_per_sweep=2,
    n_non_members=4,
    n_distractors=6,
    distractor_images=4,
    n_scenes=40,
    n_dead_links=2,
    query_images=2,
    workers=1,
)
# A very small model: the test is about the loop and the saved format, not about learning names.
CFG = dataclasses.replace(
    TRAIN_PRESETS["reduced"],
    steps=40,
    batch_size=32,
    warmup_steps=5,
    lr=2e-3,
    embed_dim=32,
    image_size=32,
    patch_size=8,
    vision_width=48,
    vision_layers=1,
    vision_head_width=24,
    text_width=32,
    text_layers=1,
    text_heads=2,
    context_length=24,
    checkpoint_every=0,
    threads=1,
    holdout_fraction=0.1,
    eval_every=10,
    select_best=True,  # the best evaluation's weights (and their copy in the checkpoint) go through every test
)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    generate_world(WORLD, out, "http://127.0.0.1:9", progress=False)
    return out


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("model") / "m"
    return out, train_tiny_clip(CFG, world, out, progress=False)


def test_saved_model_loads_with_open_clip_local_dir(trained):
    import open_clip
    import torch

    out, info = trained
    cfg = json.loads((out / "open_clip_config.json").read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"} and cfg["preprocess_cfg"]["size"] == CFG.image_size
    assert (out / WEIGHTS_FILE).is_file() and info["model_spec"] == f"local-dir:{out}"
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tok = open_clip.get_tokenizer(f"local-dir:{out}")
    assert tok.context_length == CFG.context_length
    from PIL import Image

    img = preprocess(Image.new("RGB", (64, 64), (200, 120, 40))).unsqueeze(0)
    assert img.shape == (1, 3, CFG.image_size, CFG.image_size)
    # the weights are the trained ones: a freshly initialised model of the same shape gives other embeddings
    torch.manual_seed(123)
    fresh = open_clip.CLIP(**cfg["model_cfg"])
    with torch.no_grad():
        a = model.encode_text(tok(["a photo of a person"]))
        b = fresh.encode_text(tok(["a photo of a person"]))
    assert not torch.allclose(a, b)


def test_loss_decreases_and_run_is_accounted(trained):
    out, info = trained
    losses = json.loads((out / "losses.json").read_text())
    assert len(losses) == CFG.steps
    q = CFG.steps // 4
    assert sum(losses[-q:]) / q < sum(losses[:q]) / q - 0.1, losses
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    st = info["stats"]
    assert st["rows_read"] == st["rows_used"] + st["skipped_missing_image"] + st.get("skipped_null", 0)
    assert st["skipped_missing_image"] == WORLD.n_dead_links
    # the held-out pairs are not trained on, and their scores are written beside the model
    eligible = WORLD.n_distractors * WORLD.distractor_images + WORLD.n_scenes
    assert st["heldout_pairs"] == round(CFG.holdout_fraction * eligible) == info["heldout"]["pairs"]
    assert info["n_pairs"] == st["rows_used"] - st["heldout_pairs"]
    written = json.loads((out / "train.json").read_text())["heldout"]
    assert [e["step"] for e in written["evals"]] == list(range(10, CFG.steps + 1, 10))
    assert all(0 <= e["top1"] <= e["recall5"] <= 1 and e["loss"] > 0 for e in written["evals"])
    assert written["best_top1"] == max(e["top1"] for e in written["evals"])
    assert written["saved_step"] == written["best_step"]


def test_heldout_rows_name_nobody_and_are_seeded(world):
    import pyarrow.parquet as pq

    from idia.world.train import holdout_rows

    rows = pq.read_table(sorted((world / "laion").glob("part-*.parquet"))).to_pylist()
    ids, texts = [r["SAMPLE_ID"] for r in rows], [r["TEXT"] for r in rows]
    names = [r["name"] for r in csv.DictReader((world / "identities.csv").open())]
    held = holdout_rows(world, ids, 0.2, seed=0)
    assert held == sorted(set(held)) and len(held) == round(0.2 * (len(ids) - _named_rows(world)))
    assert not [texts[i] for i in held if any(n in texts[i] for n in names)], "a held-out caption names a member"
    assert holdout_rows(world, ids, 0.2, seed=0) == held and holdout_rows(world, ids, 0.2, seed=1) != held
    assert holdout_rows(world, ids, 0.0, seed=0) == []


def _named_rows(world: Path) -> int:
    return sum(int(r["n_train_images"]) for r in csv.DictReader((world / "truth.csv").open()))


def test_saved_weights_are_the_best_evaluation_and_early_stop_stops(world, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    import idia.world.train as train_mod

    scores = iter([0.2, 0.6, 0.4, 0.6, 0.1, 0.3])  # best at the 2nd and 4th evaluation: the latest (step 20) wins
    seen: list[dict] = []

    def scripted(model, *a, **k):
        seen.append({n: v.detach().clone() for n, v in model.state_dict().items()})
        s = next(scores)
        return {"top1": s, "recall5": s}

    monkeypatch.setattr(train_mod, "retrieval_scores", scripted)
    cfg = dataclasses.replace(CFG, steps=30, eval_every=5)
    info = train_tiny_clip(cfg, world, tmp_path / "m", progress=False)
    assert info["heldout"]["best_step"] == info["heldout"]["saved_step"] == 20 and len(seen) == 6
    saved = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    assert all(torch.equal(saved[n], seen[3][n]) for n in saved), "saved weights are not the best evaluation's"
    assert not all(torch.equal(saved[n], seen[-1][n]) for n in saved)

    scores, seen[:] = iter([0.2, 0.6, 0.4, 0.5, 0.7]), []
    info = train_tiny_clip(dataclasses.replace(cfg, early_stop_patience=2), world, tmp_path / "e", progress=False)
    assert info["steps_run"] == 20 and info["heldout"]["early_stopped_at"] == 20 and len(seen) == 4
    assert info["heldout"]["saved_step"] == 10

    scores, seen[:] = iter([0.2, 0.6, 0.4, 0.6, 0.1, 0.3]), []  # the default: the last step's weights
    info = train_tiny_clip(dataclasses.replace(cfg, select_best=False), world, tmp_path / "l", progress=False)
    assert info["heldout"]["best_step"] == 20 and info["heldout"]["saved_step"] == 30
    saved = load_file(str(tmp_path / "l" / WEIGHTS_FILE))
    assert all(torch.equal(saved[n], seen[-1][n]) for n in saved)


def test_rerun_skips_and_killed_run_resumes_to_same_weights(trained, world, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    out, _ = trained
    assert train_tiny_clip(CFG, world, out, progress=False)["skipped"] is True
    cfg = dataclasses.replace(CFG, checkpoint_every=20)
    target = tmp_path / "m"
    import idia.world.train as train_mod

    def killed(*a, **k):  # dies after the loop, before the model is saved: only the step-20 checkpoint remains
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "loss_curve", killed)
    with pytest.raises(KeyboardInterrupt):  # raised by the patched plot, no message to match
        train_tiny_clip(cfg, world, target, progress=False)
    assert not target.exists() and (tmp_path / ".m.partial" / "checkpoint.pt").exists()
    monkeypatch.undo()
    info = train_tiny_clip(cfg, world, target, progress=False)
    assert info["stats"]["resumed_from_step"] == 20
    assert not (tmp_path / ".m.partial").exists()
    a, b = load_file(str(out / WEIGHTS_FILE)), load_file(str(target / WEIGHTS_FILE))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), "resumed run differs from a straight run"
    ev = [json.loads((d / "train.json").read_text())["heldout"] for d in (out, target)]
    assert ev[0]["evals"] == ev[1]["evals"] and ev[0]["saved_step"] == ev[1]["saved_step"]


def test_augmentation_keeps_shape_is_seeded_and_changes_pixels():
    import torch

    from idia.world.train import augment_batch

    x = torch.rand(4, 3, 64, 64)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    c = augment_batch(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    # brightness/contrast jitter stays within 10%: the batch mean moves by at most 0.1
    assert (a.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() <= 0.1 + 1e-6


def test_distinct_looks_gives_every_identity_its_own_look():
    from idia.world.identities import generate_people, look

    people = generate_people(170, seed=1, distinct_looks=True)
    assert len({look(p.appearance) for p in people}) == 170
    alike = generate_people(170, seed=1, distinct_looks=False)
    assert len({look(p.appearance) for p in alike}) < 170  # what the older worlds had: look-alikes


def test_demo_context_length_holds_every_caption_and_prompt(world):
    """The demo model reads 24 text tokens: every caption of a world and every attack prompt with each of its names
    must fit, SOT and EOT included (a longer one would be cut and its end lost)."""
    import open_clip
    import pyarrow.parquet as pq

    from idia.attack.prompts import TEMPLATES

    limit = TRAIN_PRESETS["demo"].context_length
    tok = open_clip.SimpleTokenizer(context_length=77)
    captions = [
        t for f in sorted((world / "laion").glob("part-*.parquet")) for t in pq.read_table(f)["TEXT"].to_pylist()
    ]
    with open(world / "identities.csv", newline="") as fh:
        names = [r["name"] for r in csv.DictReader(fh)]
    prompts = [t.format(n) for t in TEMPLATES for n in names]
    lengths = (tok(captions + prompts) != 0).sum(1)
    assert len(captions) > 100 and len(prompts) == 21 * len(names)
    assert int(lengths.max()) <= limit, [s for s, n in zip(captions + prompts, lengths.tolist()) if n > limit][:3]
