"""`idia world`: generate the synthetic world folder (identities, truth, caption shards, images, query list)."""

from __future__ import annotations

import argparse
import time

from idia.config import from_file_and_args, to_dict
from idia.world.generate import PRESETS, WorldConfig, generate_world

DEFAULT_BASE_URL = "http://127.0.0.1:8765"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="world folder to write (skipped if complete with the same config)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="starting configuration: demo (the end-to-end demo's world) or reduced (test-suite size)")
    parser.add_argument("--config", help="YAML/JSON file with WorldConfig keys, applied over the preset")
    parser.add_argument("--seed", type=int, help="seed: same seed and config give the same bytes")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL,
                        help="URL prefix of the image server that will serve the world folder "
                             "(e.g. `python -m idia.loopback_server --root OUT --port 8765`)")
    parser.add_argument("--workers", type=int, help="processes rendering images (does not change the output)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> WorldConfig:
    cfg = from_file_and_args(WorldConfig, args, "world config", base=to_dict(PRESETS[args.preset]))
    cfg.validate()
    return cfg


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    t0 = time.time()
    s = generate_world(cfg, args.out, args.base_url, progress=not args.quiet)
    state = "already complete (same config and base URL), skipped" if s["skipped"] else f"written in {time.time() - t0:.1f} s"
    print(f"world {args.out}: {state}")
    print(f"  seed {s['seed']}, {s['n_identities']} identities under test: {s['n_members']} members, "
          f"{s['n_non_members']} non-members; groups {s['groups']}")
    print(f"  caption rows {s['caption_rows']} in {s['laion_shards']} shard(s): {s['rows_by_kind']}")
    print(f"  query images {s['query_images']}; URLs on {s['base_url']}")
    print("  files: identities.csv, truth.csv, laion/part-NNNNN.parquet, queries.tsv, images/, world.json")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m idia.world.cli", description=__doc__)
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
