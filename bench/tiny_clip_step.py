"""Cost of one training step of the tiny CLIP: the issue's reference architecture vs the demo's, side by side.

.venv/bin/python bench/tiny_clip_step.py [--steps 4 --threads 1 --batch 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP

from idia.world.train import TrainConfig

ARCHS = {
    # the known-feasible architecture: ViT 64 px, patch 8, width 192, 4 layers; text 3 layers width 128
    "issue (p8 w192x4, text 3)": dict(
        patch_size=8, vision_width=192, vision_layers=4, vision_head_width=64, text_layers=3
    ),
    "demo (TrainConfig defaults)": {},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per architecture (after one warm-up step)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--batch", type=int, default=128, help="batch size")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    res = {}
    for name, kw in ARCHS.items():
        cfg = dataclasses.replace(TrainConfig(), **kw)
        model = CLIP(**cfg.model_cfg())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(a.batch, 3, cfg.image_size, cfg.image_size)
        t = torch.randint(1, 49000, (a.batch, cfg.context_length))
        loss_fn = ClipLoss()
        for i in range(a.steps + 1):
            if i == 1:
                w, c = time.perf_counter(), time.process_time()
            loss = loss_fn(
                model.encode_image(x, normalize=True), model.encode_text(t, normalize=True), model.logit_scale.exp()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        res[name] = ((time.perf_counter() - w) / a.steps, (time.process_time() - c) / a.steps)
        n_params = sum(q.numel() for q in model.parameters())
        print(f"{name}: {n_params / 1e6:.1f} M params, wall {res[name][0]:.2f} s/step, CPU {res[name][1]:.2f} s/step")
    (iw, ic), (dw, dc) = res.values()
    print(f"issue/demo cost ratio: wall {iw / dw:.2f}x, CPU {ic / dc:.2f}x")


if __name__ == "__main__":
    main()
