"""Feasibility of the end-to-end demo: does the tiny CLIP trained on the synthetic world let the IDIA find members?

Embeds the world's query photos (read from disk, not downloaded), runs the attack library's decision rule (21
templates x 1,000 candidates, argmax per image and template, plurality over k images, tau) and prints TPR of the
main group, FPR of the non-members and TPR per sweep group, at each k.

    .venv/bin/python bench/world_feasibility.py --world W --model M [--k 10 --draws 20 --tau 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from idia.attack.candidates import build_candidates
from idia.attack.decision import attack_identity, predict
from idia.attack.embeddings import encode_image_tensor, text_embeddings
from idia.attack.models import load_model
from idia.attack.prompts import TEMPLATES
from idia.mine.names import read_names
from idia.world.generate import read_truth


def measure(world: Path, model_dir: Path, ks: list[int], draws: int, tau: int, seed: int, n_candidates: int) -> dict:
    torch.set_num_threads(2)
    t0 = time.time()
    model, preprocess, tokenizer = load_model(f"local-dir:{model_dir}")
    identities = read_names(world / "identities.csv")
    cands = build_candidates(identities, n_candidates, seed)
    names = cands.column("name").to_pylist()
    index_of = {iid: i for i, iid in enumerate(cands.column("identity_id").to_pylist()) if iid is not None}
    text, _ = text_embeddings(model, tokenizer, list(TEMPLATES), names, None)
    by_id: dict[str, list[Path]] = defaultdict(list)
    with open(world / "queries.tsv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            by_id[r["identity_id"]].append(world / r["url"].split("/", 3)[3])
    truth = {r["identity_id"]: r for r in read_truth(world)}
    results: dict[int, dict[str, list[float]]] = {k: defaultdict(list) for k in ks}
    for iid, paths in sorted(by_id.items()):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
        preds = predict(encode_image_tensor(model, batch), text)
        out = attack_identity(preds, index_of[iid], iid, ks, draws, seed, tau)
        for k in ks:
            sel = out["k"] == k
            results[k][truth[iid]["group"]].append(float(out["predicted_member"][sel].mean()))
    table = {}
    for k in ks:
        table[k] = {g: round(float(np.mean(v)), 3) for g, v in sorted(results[k].items())}
    return {
        "k": ks,
        "draws": draws,
        "tau": tau,
        "n_candidates": len(names),
        "rate_predicted_member": table,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", required=True, help="world folder (idia world)")
    p.add_argument("--model", required=True, help="model folder (idia train)")
    p.add_argument("--k", default="1,5,10", help="comma-separated k values")
    p.add_argument("--draws", type=int, default=20, help="random draws of k images per identity")
    p.add_argument("--tau", type=int, default=1, help="correct templates needed to call a member")
    p.add_argument("--seed", type=int, default=0, help="seed for candidates and draws")
    p.add_argument("--candidates", type=int, default=1000, help="candidate names (true + fake)")
    a = p.parse_args()
    res = measure(Path(a.world), Path(a.model), [int(x) for x in a.k.split(",")], a.draws, a.tau, a.seed, a.candidates)
    print(json.dumps(res, indent=1))
    for k, row in res["rate_predicted_member"].items():
        print(
            f"k={k}: TPR main {row.get('main')}, FPR non-members {row.get('non_member')}, sweep "
            + ", ".join(f"{g}={v}" for g, v in row.items() if g.startswith("sweep"))
        )


if __name__ == "__main__":
    main()
