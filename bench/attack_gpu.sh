#!/usr/bin/env bash
# One-shot attack benchmark on a CUDA machine: ViT-B-32 with random weights, the study's 1,000 candidates x 21
# templates, realistic batch sizes. Prints and writes JSON (end-to-end images/s vs raw encoder forward, warm
# text-cache cost). Run from the repository root with the project's venv:  bash bench/attack_gpu.sh [OUT_DIR]
set -euo pipefail
OUT="${1:-${OUT:-bench_out}}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$OUT"
export NO_ALBUMENTATIONS_UPDATE=1 OMP_NUM_THREADS=4
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported())
PY
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
CORES=$(nproc)
for BS in 256 1024; do
  echo "== ViT-B-32, batch $BS =="
  timeout 280 "$PY" bench/attack.py --model ViT-B-32 --identities 64 --images-per-identity 32 --image-size 256 \
    --num-candidates 1000 --batch-size "$BS" --group-size 16 --decode-threads $((CORES > 4 ? CORES - 2 : 2)) \
    --torch-threads 4 --precision auto --decode-processes "0,$((CORES > 9 ? 8 : CORES - 1))" --workdir "$OUT/work-$BS" --json "$OUT/attack_gpu_bs$BS.json" \
    2>"$OUT/attack_gpu_bs$BS.log" || echo "batch $BS failed or timed out: see $OUT/attack_gpu_bs$BS.log"
  cat "$OUT/attack_gpu_bs$BS.json" 2>/dev/null || tail -20 "$OUT/attack_gpu_bs$BS.log"
done
