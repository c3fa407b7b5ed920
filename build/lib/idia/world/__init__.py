"""The synthetic world: fictional identities with face-like images and LAION-shaped captions (the study's
controlled experiment in miniature). `generate_world(cfg, out_dir, base_url)` writes one."""

from idia.world.generate import PRESETS, WorldConfig, generate_world, read_truth

__all__ = ["PRESETS", "WorldConfig", "generate_world", "read_truth"]
