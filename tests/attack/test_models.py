"""The model loader: local-dir round trip, unknown models and checkpoints that do not fit give clear errors."""

import json

import pytest
import torch

from idia.attack.models import fingerprint, load_model
from idia.core.errors import UserError
from tests.support.tiny_model import TINY_CFG, save_tiny_model


def test_local_dir_round_trip(tmp_path):
    import open_clip

    spec = save_tiny_model(tmp_path / "m", seed=3)
    model, preprocess, tok = load_model(spec)
    torch.manual_seed(3)
    ref = open_clip.CLIP(**TINY_CFG).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x), ref.encode_image(x), atol=1e-6)
        assert torch.allclose(model.encode_text(tok(["a b"])), ref.encode_text(tok(["a b"])), atol=1e-6)
    # the model's own preprocessing comes from its config (mean 0.5, std 0.25)
    norm = preprocess.transforms[-1]
    assert list(norm.mean) == [0.5, 0.5, 0.5] and list(norm.std) == [0.25, 0.25, 0.25]
    again, _, _ = load_model(spec)
    assert fingerprint(model, tok) == fingerprint(again, tok)
    other, _, _ = load_model(save_tiny_model(tmp_path / "m2", seed=4))
    assert fingerprint(other, tok) != fingerprint(model, tok)


def test_unknown_model_and_missing_folder(tmp_path):
    with pytest.raises(UserError, match="unknown model 'ViT-Nope-99'"):
        load_model("ViT-Nope-99")
    with pytest.raises(UserError, match="not found"):
        load_model(f"local-dir:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="open_clip_config.json"):
        load_model(f"local-dir:{tmp_path / 'empty'}")
    with pytest.raises(UserError, match="neither a checkpoint file nor a known tag"):
        load_model("RN50", pretrained="no-such-tag")


def test_checkpoint_that_does_not_fit(tmp_path):
    spec = save_tiny_model(tmp_path / "m")
    cfg_path = tmp_path / "m" / "open_clip_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_cfg"]["embed_dim"] = 48  # weights were saved for embed_dim 32
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="does not fit"):
        load_model(spec)


def test_checkpoint_with_code_is_refused(tmp_path):
    # weights_only=True: a pickle that would run code is not loaded
    save_tiny_model(tmp_path / "m")
    (tmp_path / "m" / "open_clip_model.safetensors").unlink()
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _Evil()}, tmp_path / "m" / "open_clip_pytorch_model.bin")
    with pytest.raises(UserError, match="cannot load weights"):
        load_model(f"local-dir:{tmp_path / 'm'}")


class _Evil:
    def __reduce__(self):
        return (print, ("this must not run",))


def test_random_weights_are_seeded_so_every_worker_builds_the_same_model(tmp_path):
    save_tiny_model(tmp_path / "m")
    (tmp_path / "m" / "open_clip_model.safetensors").unlink()  # config only: random weights
    spec = f"local-dir:{tmp_path / 'm'}"
    a, _, tok = load_model(spec, init_seed=7)
    b, _, _ = load_model(spec, init_seed=7)
    c, _, _ = load_model(spec, init_seed=8)
    assert fingerprint(a, tok) == fingerprint(b, tok) != fingerprint(c, tok)


def test_precision_resolution():
    from idia.attack.models import resolve_precision

    assert resolve_precision("cpu", "auto") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("cpu", "fp16")


_FETCH = """
import json, sys
from idia.attack.models import fetch_weights
from idia.core.errors import UserError
try:
    path, options = fetch_weights(sys.argv[1], sys.argv[2], sys.argv[3])
    print(json.dumps({"path": path, "options": [list(o) for o in options]}))
except UserError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def _fetch(tmp_path, *args: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    # HF_HUB_OFFLINE: this machine has no network; the hub library then answers from its cache at once
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", _FETCH, *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_pretrained_tag_is_fetched_once_into_the_weights_dir_with_what_the_tag_implies(tmp_path):
    """What the client ships to the workers for --pretrained laion400m_e32 (the study's weights): the checkpoint file
    in the weights folder, QuickGELU and the tag's preprocessing, so a worker loads the file and needs no network."""
    repo = tmp_path / "weights" / "models--timm--vit_base_patch32_clip_224.laion400m_e32"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"weights fetched earlier")
    got = _fetch(tmp_path, "ViT-B-32", "laion400m_e32", str(tmp_path / "weights"))
    assert got["path"] == str(snap / "open_clip_pytorch_model.bin")
    options = dict((k, v) for k, v in got["options"])
    assert options["force_quick_gelu"] is True
    assert options["image_interpolation"] == "bicubic" and len(options["image_mean"]) == 3


def test_weights_that_cannot_be_fetched_stop_the_client_with_what_to_do(tmp_path):
    got = _fetch(tmp_path, "ViT-B-32", "laion400m_e32", str(tmp_path / "empty"))
    assert "cannot fetch the weights into" in got["error"] and "--pretrained /path/to/weights" in got["error"]
    got = _fetch(tmp_path, "ViT-B-32", "no-such-tag", str(tmp_path / "empty"))
    assert "neither a checkpoint file nor a known tag" in got["error"]


def test_files_and_other_model_sources_pass_through(tmp_path):
    from idia.attack.models import fetch_weights

    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    assert fetch_weights("ViT-B-32", str(f), str(tmp_path)) == (str(f), ())
    assert fetch_weights("ViT-B-32", None, str(tmp_path)) == (None, ())
    assert fetch_weights("local-dir:/x", None, str(tmp_path)) == (None, ())
