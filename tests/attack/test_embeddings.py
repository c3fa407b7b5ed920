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


def test_decoding_in_processes_gives_the_thread_path_s_embeddings(tmp_path):
    """The DataLoader path (each decoding process with its own readers) makes the same batches as the threads, so the
    same keys, embeddings and skipped images, from webdataset-style tars and plain files alike."""
    import io
    import tarfile

    from idia.attack.embeddings import decode_processes_for, embed_image_refs
    from idia.attack.images import ImageRef

    model, pre, _ = load_model(save_tiny_model(tmp_path / "m"))
    rng = np.random.default_rng(1)
    tar_path = tmp_path / "00000.tar"
    refs = []
    with tarfile.open(tar_path, "w") as tf:
        for i in range(9):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, format="JPEG")
            data = buf.getvalue() if i != 4 else b"\xff\xd8 not a jpeg"  # one corrupt member
            info = tarfile.TarInfo(f"{i:09d}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            refs.append((("p", i), ImageRef("p", str(i), str(tar_path), f"{i:09d}")))
    loose = tmp_path / "loose.png"
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(loose)
    refs.append((("q", 0), ImageRef("q", "0", str(loose))))
    threads = embed_image_refs(model, pre, refs, batch_size=4, decode_threads=3)
    procs = embed_image_refs(model, pre, refs, batch_size=4, decode_processes=2)
    assert procs[3]["decode"] == "processes:2" and threads[3]["decode"] == "threads:3"
    assert procs[0] == threads[0] and len(procs[0]) == 9
    assert np.array_equal(procs[1], threads[1])
    assert procs[2] == threads[2] == [(("p", 4), "corrupt")]
    assert decode_processes_for(None, "cpu", 16) == 0 and decode_processes_for(None, "cuda:0", 16) == 8
    assert decode_processes_for(None, "cuda:0", 2) == 1 and decode_processes_for(3, "cpu", 2) == 3
