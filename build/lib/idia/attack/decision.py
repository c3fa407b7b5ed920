"""The attack's decision rule: argmax per (image, template), plurality per template over k images, score >= tau."""

from __future__ import annotations

import hashlib

import numpy as np

DEFAULT_KS: tuple[int, ...] = tuple(range(1, 30, 2)) + (30,)


def predict(image_emb: np.ndarray, text_emb: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Predicted candidate per (image, template): argmax of cosine similarity. image_emb [N,D], text_emb [T,C,D]
    (both L2-normalised) -> int32 [N,T]."""
    t, c, d = text_emb.shape
    flat = text_emb.reshape(t * c, d)
    out = np.empty((image_emb.shape[0], t), dtype=np.int32)
    for s in range(0, image_emb.shape[0], chunk):  # bounds memory at chunk x T x C floats
        sims = image_emb[s : s + chunk] @ flat.T
        out[s : s + chunk] = sims.reshape(-1, t, c).argmax(axis=2)
    return out


def correct_templates(preds: np.ndarray, true_index: int) -> np.ndarray:
    """preds [D, k, T] (draws x images x templates) -> bool [D, T]: the unique plurality candidate is the true one.

    A tie at the top counts as not correct (the study's rule)."""
    d, k, t = preds.shape
    values, inv = np.unique(preds, return_inverse=True)
    inv = inv.reshape(d, k, t)
    counts = np.zeros((d, t, len(values)), dtype=np.int32)
    di = np.broadcast_to(np.arange(d)[:, None, None], inv.shape)
    ti = np.broadcast_to(np.arange(t)[None, None, :], inv.shape)
    np.add.at(counts, (di, ti, inv), 1)
    pos = np.searchsorted(values, true_index)
    if pos >= len(values) or values[pos] != true_index:
        return np.zeros((d, t), dtype=bool)
    true_count = counts[:, :, pos].copy()
    counts[:, :, pos] = -1
    best_other = counts.max(axis=2)
    return true_count > best_other


def draw_seed(seed: int, identity_id: str, k: int, draw: int) -> list[int]:
    """A draw's sample depends only on (seed, identity_id, k, draw): never on worker, group or order."""
    h = int.from_bytes(hashlib.blake2b(identity_id.encode("utf-8"), digest_size=8).digest(), "little")
    return [int(seed), h, int(k), int(draw)]


def sample_draws(n_images: int, k_used: int, draws: int, seed: int, identity_id: str, k: int) -> np.ndarray:
    """Indices [draws, k_used] of the images used in each draw, without replacement within a draw."""
    out = np.empty((draws, k_used), dtype=np.int64)
    for j in range(draws):
        rng = np.random.default_rng(draw_seed(seed, identity_id, k, j))
        out[j] = np.sort(rng.choice(n_images, size=k_used, replace=False))
    return out


def resolve_ks(ks: list[int] | tuple[int, ...], n_images: int, k_policy: str = "cap") -> list[tuple[int, int]]:
    """(k requested, k used) pairs for an identity with n_images: 'cap' uses what exists, 'skip' drops k > n."""
    out = []
    for k in ks:
        if k <= n_images:
            out.append((k, k))
        elif k_policy == "cap":
            out.append((k, n_images))
        elif k_policy != "skip":
            raise ValueError(f"unknown k policy {k_policy!r}")
    return out


def attack_identity(
    preds: np.ndarray,
    true_index: int,
    identity_id: str,
    ks: list[int] | tuple[int, ...],
    draws: int,
    seed: int,
    tau: int,
    k_policy: str = "cap",
) -> dict[str, np.ndarray]:
    """All attacks on one identity from its per-image predictions preds [n, T].

    Returns columns k, k_used, draw, correct_templates, predicted_member (one row per (k, draw))."""
    n = preds.shape[0]
    cols: dict[str, list] = {"k": [], "k_used": [], "draw": [], "correct_templates": []}
    for k, k_used in resolve_ks(ks, n, k_policy):
        if k_used <= 0:
            continue
        idx = sample_draws(n, k_used, draws, seed, identity_id, k)
        score = correct_templates(preds[idx], true_index).sum(axis=1)
        cols["k"].extend([k] * draws)
        cols["k_used"].extend([k_used] * draws)
        cols["draw"].extend(range(draws))
        cols["correct_templates"].extend(score.tolist())
    out = {name: np.asarray(v, dtype=np.int32) for name, v in cols.items()}
    out["predicted_member"] = out["correct_templates"] >= tau
    return out
