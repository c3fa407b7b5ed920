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
