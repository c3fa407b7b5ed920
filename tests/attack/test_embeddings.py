"""Text embeddings cached under a content hash (a warm run computes none); images encoded once, corrupt skipped."""

import numpy as np
from PIL import Image

from idia.attack.embeddings import embed_images, text_embeddings
from idia.attack.models import load_model
from idia.attack.prompts import TEMPLATES
from tests.support.tiny_model import save_tiny_model


def test_text_cache_warm_run_computes_nothing(tmp_path):
    model, _, tok = load_model(save_tiny_model(tmp_path / "m"))
    names = ["Ann Lee", "Bo Chen", "Cy Diaz"]
    cache = tmp_path / "cache"
    e1, i1 = text_embeddings(model, tok, list(TEMPLATES), names, cache)
    assert i1["computed"] == 21 * 3 and not i1["cache_hit"]
    assert e1.shape == (21, 3, 32)
    assert np.allclose(np.linalg.norm(e1, axis=-1), 1, atol=1e-5)
    e2, i2 = text_embeddings(model, tok, list(TEMPLATES), names, cache)
    assert i2["computed"] == 0 and i2["cache_hit"]
    assert np.array_equal(e1, e2)
    # any change of model weights, templates or candidates is a different key
    _, i3 = text_embeddings(model, tok, list(TEMPLATES), names + ["Di Eve"], cache)
    _, i4 = text_embeddings(model, tok, list(TEMPLATES[:5]), names, cache)
    other, _, _ = load_model(save_tiny_model(tmp_path / "m2", seed=9))
    _, i5 = text_embeddings(other, tok, list(TEMPLATES), names, cache)
    assert i3["computed"] == 21 * 4 and i4["computed"] == 5 * 3 and i5["computed"] == 21 * 3
    assert len({i1["key"], i3["key"], i4["key"], i5["key"]}) == 4
    assert len(list(cache.glob("text-*.npy"))) == 4


def test_embed_images_batched_and_corrupt_skipped(tmp_path):
    model, pre, _ = load_model(save_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    items = [(p.name, (lambda p=p: Image.open(p))) for p in paths]
    items.insert(3, ("bad.jpg", lambda: Image.open(tmp_path / "bad.jpg")))
    keys, emb, failed, _ = embed_images(model, pre, items, batch_size=3)
    assert keys == [p.name for p in paths] and failed == [("bad.jpg", "corrupt")]
    assert emb.shape == (7, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # the batch size does not change an image's embedding
    _, emb1, _, _ = embed_images(model, pre, items, batch_size=1)
    assert np.allclose(emb, emb1, atol=1e-5)
