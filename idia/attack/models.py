"""The one model loader: any model spec open_clip accepts (built-in + tag/checkpoint, hf-hub:, local-dir:)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from idia.core.errors import UserError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def _check_spec(spec: str, pretrained: str | None) -> None:
    import open_clip
    from open_clip.factory import parse_model_name

    try:
        schema, ident = parse_model_name(spec)
    except ValueError as exc:
        raise UserError(f"model {spec!r}: {exc}") from None
    if schema == "local-dir":
        folder = Path(ident)
        if not folder.is_dir():
            raise UserError(f"model {spec!r}: folder {folder} not found")
        cfg = folder / "open_clip_config.json"
        if not cfg.is_file():
            raise UserError(
                f"model {spec!r}: {cfg} not found (a local-dir model needs open_clip_config.json "
                "with model_cfg and preprocess_cfg beside its weights)"
            )
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"{cfg}: not valid JSON: {exc}") from None
        if "model_cfg" not in data:
            raise UserError(f"{cfg}: missing key 'model_cfg'")
    elif schema is None:
        name = ident.replace("/", "-")
        if name not in open_clip.list_models():
            raise UserError(
                f"unknown model {spec!r}: not an open_clip architecture (e.g. ViT-B-32, RN50); "
                "use hf-hub:org/repo or local-dir:/path for other models"
            )
        if pretrained and not os.path.isfile(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(name)
            if pretrained not in tags:
                raise UserError(
                    f"--pretrained {pretrained!r} for {name}: neither a checkpoint file nor a known tag "
                    f"({', '.join(tags) or 'none'})"
                )


#: What an open_clip pretrained tag says beyond its weights, as create_model_and_transforms arguments: loading the
#: tag's file instead of the tag must build the same model with the same preprocessing.
_TAG_ARGS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


def fetch_weights(spec: str, pretrained: str | None, weights_dir: str) -> tuple[str | None, tuple]:
    """An open_clip pretrained tag fetched once, here (the client), into `weights_dir` (a folder the workers can
    read): (the checkpoint file, the model arguments the tag implies: QuickGELU, image mean/std, interpolation and
    resize mode). Workers then load the file and need no network. A file, no weights or a model open_clip gets
    elsewhere (hf-hub:, local-dir:) come back unchanged."""
    if not pretrained or os.path.isfile(pretrained) or ":" in spec:
        return pretrained, ()
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    _check_spec(spec, pretrained)  # an unknown tag: its own clear error
    cfg = get_pretrained_cfg(spec.replace("/", "-"), pretrained)
    if not cfg or any(k in cfg for k in ("size", "fill_color")):  # not expressible as arguments: workers fetch it
        return pretrained, ()
    os.makedirs(weights_dir, exist_ok=True)
    try:
        path = download_pretrained(cfg, cache_dir=weights_dir)
    except Exception as exc:  # network, hub or disk: one message
        raise UserError(
            f"--pretrained {pretrained} for {spec}: cannot fetch the weights into {weights_dir} "
            f"({type(exc).__name__}: {str(exc)[:300]}); run where the network reaches them once (compute nodes then "
            "need none), or pass the checkpoint file: --pretrained /path/to/weights"
        ) from None
    args = [(arg, tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k]) for k, arg in _TAG_ARGS.items() if k in cfg]
    if cfg.get("quick_gelu"):
        args.append(("force_quick_gelu", True))
    return os.path.abspath(path), tuple(sorted(args))


def load_model(
    spec: str,
    pretrained: str | None = None,
    device: str = "cpu",
    precision: str = "auto",
    init_seed: int = 0,
    options: tuple = (),
):
    """Build a CLIP model in eval mode -> (model, preprocess, tokenizer).

    Weights load with weights_only=True. Without weights the random init is seeded (init_seed), so every worker
    builds the same model. `precision` is applied at inference (autocast), not stored in the weights. `options`:
    more create_model_and_transforms arguments as (name, value) pairs (what fetch_weights says a tag implies)."""
    import open_clip

    _check_spec(spec, pretrained)
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec, pretrained=pretrained, device="cpu", precision="fp32", weights_only=True, **dict(options)
            )
        except RuntimeError as exc:
            msg = str(exc)
            if "state_dict" in msg or "size mismatch" in msg or "Missing key" in msg:
                first = msg.splitlines()[0:4]
                raise UserError(
                    f"model {spec!r}: the checkpoint does not fit the architecture: "
                    f"{' '.join(x.strip() for x in first)[:600]}"
                ) from None
            raise UserError(f"model {spec!r}: {msg[:600]}") from None
        except (pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
            raise UserError(f"model {spec!r}: cannot load weights ({type(exc).__name__}: {str(exc)[:400]})") from None
    model = model.to(device).eval()
    tokenizer = open_clip.get_tokenizer(spec)
    return model, preprocess, tokenizer


def resolve_precision(device: str, precision: str) -> str:
    """'auto' -> bf16 on CUDA with bf16 support, else fp16 on CUDA, fp32 on CPU."""
    if precision != "auto":
        if precision == "fp16" and not str(device).startswith("cuda"):
            raise UserError("precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
        return precision
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: str, precision: str):
    """Mixed-precision context for inference; fp32 runs without autocast."""
    p = resolve_precision(device, precision)
    if p == "fp32":
        return nullcontext()
    dtype = torch.float16 if p == "fp16" else torch.bfloat16
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


def fingerprint(model, tokenizer) -> str:
    """Content hash of a model's identity: every weight tensor (names, shapes, bytes) and the tokenizer's setup."""
    cached = getattr(model, "_idia_fingerprint", None)
    if cached:
        return cached
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(f"tok|{type(tokenizer).__name__}|{getattr(tokenizer, 'context_length', None)}".encode())
    digest = h.hexdigest()
    try:
        model._idia_fingerprint = digest
    except Exception:  # some wrapped modules refuse new attributes; then hash again next time
        logging.debug("cannot cache fingerprint on model")
    return digest


@dataclass(frozen=True)
class ModelSpec:
    """Which model a worker builds, and where it runs it."""

    model: str
    pretrained: str | None = None
    init_seed: int = 0
    device: str = "cpu"  # a concrete device; the engine resolves "auto" on each worker
    precision: str = "auto"
    torch_threads: int | None = None
    options: tuple = ()  # more model arguments, (name, value) pairs: see fetch_weights


_CACHED: dict[ModelSpec, tuple] = {}


def local_device(requested: str) -> str:
    """A concrete device for "auto" in this process: the first GPU if there is one, else the CPU. (Engines that place
    workers on GPUs, such as the Dask adapter, resolve "auto" themselves before a task runs.)"""
    if requested != "auto":
        return requested
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def cached_model(spec: ModelSpec) -> tuple:
    """(model, preprocess, tokenizer), built once per process and reused by every later task (never pickled)."""
    if spec not in _CACHED:
        if spec.torch_threads:
            torch.set_num_threads(int(spec.torch_threads))
        _CACHED.clear()  # one model per worker process
        _CACHED[spec] = load_model(
            spec.model,
            spec.pretrained,
            device=spec.device,
            precision=spec.precision,
            init_seed=spec.init_seed,
            options=spec.options,
        )
    return _CACHED[spec]
