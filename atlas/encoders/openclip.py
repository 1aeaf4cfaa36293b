"""OpenCLIP encoder (the seed's ViT-B-32 ``laion2b_s34b_b79k``): text and images in one space.

Weights come from, in order: ``--clip-checkpoint PATH``; the Hugging Face cache; a download when the
Hub is reachable. ``pretrained="random"`` builds the architecture with random weights and exists only
so tests can run the real code path without weights; the lake records it.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from atlas.encoders.base import Encoder, EncoderInfo, EncoderUnavailable, l2_normalise, package_version
from atlas.encoders.offline import quantize_int8
from atlas.hashing import file_digest
from atlas.images import within_aspect

log = logging.getLogger(__name__)

RANDOM = "random"
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: Hub repositories of tags we know, so a cache check need not import open_clip (and torch).
KNOWN_HF_REPOS = {("ViT-B-32", "laion2b_s34b_b79k"): "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"}


def how_to_fix(model: str, pretrained: str) -> str:
    return (
        f"OpenCLIP weights for {model}/{pretrained} are not available on this machine. Either\n"
        f"  * pass --clip-checkpoint PATH (an open_clip .safetensors/.bin file for {model}), or\n"
        f"  * on a machine with internet run: python -c \"import open_clip; "
        f"open_clip.create_model_and_transforms('{model}', pretrained='{pretrained}')\" and copy "
        "~/.cache/huggingface to this machine (or set HF_HOME), or\n"
        "  * use --encoder offline (MiniLM text + EfficientNet-Lite0 pictures, no download needed)."
    )


def cached_weights(model: str, pretrained: str, *, cache_dir: Path | None = None) -> Path | None:
    """The weights file in the local Hugging Face cache (or ``cache_dir``), without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = KNOWN_HF_REPOS.get((model, pretrained)), None
    if repo_id is None:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(model, pretrained)
        if not cfg or not cfg.get("hf_hub"):
            return None
        repo_id = cfg["hf_hub"].rstrip("/")
        if repo_id.count("/") > 1:
            repo_id, filename = repo_id.rsplit("/", 1)
    for name in (filename,) if filename else _HF_FILES:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str):
            return Path(hit)
    return None


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _quantize(net):
    """int8 dynamic quantisation; open_clip reads ``.weight.dtype`` of MLP layers, which quantised
    layers expose as a method, so record the original dtype where open_clip looks for it. The attention
    pool of its ResNet towers (RN50…) reads its projections' ``.bias`` as tensors, which quantised layers
    also expose as methods: those four layers stay float."""
    import torch
    from open_clip.modified_resnet import AttentionPool2d

    pools = [name for name, module in net.named_modules() if isinstance(module, AttentionPool2d)]
    keep = frozenset(f"{pool}.{child}" for pool in pools
                     for child, layer in net.get_submodule(pool).named_children() if isinstance(layer, torch.nn.Linear))
    qnet = quantize_int8(net, keep_float=keep)
    for module in qnet.modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            module.int8_original_dtype = torch.float32
    return qnet


class OpenClipEncoder(Encoder):
    def __init__(
        self,
        *,
        model: str,
        pretrained: str,
        checkpoint: Path | None = None,
        config_path: Path | None = None,
        quantize: str = "none",
        allow_download: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        import open_clip
        import torch

        from atlas.device import torch_device

        if config_path:
            open_clip.add_model_config(Path(config_path))
        if model not in open_clip.list_models():
            raise EncoderUnavailable(f"unknown OpenCLIP model {model!r}; pass --clip-config for custom ones")
        weights: str | None
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise EncoderUnavailable(f"--clip-checkpoint {checkpoint} does not exist.\n" + how_to_fix(model, pretrained))
            weights = str(checkpoint)
        elif pretrained == RANDOM:
            log.warning("OpenCLIP %s with RANDOM weights: for tests only, its vectors mean nothing", model)
            weights = None
        else:
            cached = cached_weights(model, pretrained, cache_dir=cache_dir)
            if cached is None and not (allow_download and hub_reachable()):
                raise EncoderUnavailable(how_to_fix(model, pretrained))
            weights = str(cached) if cached else pretrained
        device = "cpu" if quantize == "int8" else torch_device()
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device)
        except Exception as exc:  # download or checkpoint errors come in many types
            raise EncoderUnavailable(f"{exc}\n" + how_to_fix(model, pretrained)) from exc
        net.eval()
        self.net = _quantize(net) if quantize == "int8" else net
        self.device = device
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model)
        dim = int(open_clip.get_model_config(model)["embed_dim"])
        context = int(open_clip.get_model_config(model)["text_cfg"].get("context_length", 77))
        self._torch = torch
        self.info = EncoderInfo(
            name="openclip",
            text_model=f"open_clip:{model}",
            image_model=f"open_clip:{model}",
            text_dim=dim,
            image_dim=dim,
            shared_space=True,
            quantize=quantize,
            text_max_tokens=context,
            settings={
                "model": model,
                "pretrained": pretrained if not checkpoint else f"checkpoint:{Path(checkpoint).name}",
                "checkpoint": str(checkpoint) if checkpoint else None,
                # the contents, not only the names: a checkpoint retrained in place (or an edited model
                # config) makes other vectors, so the embedding caches must not serve the old ones
                "checkpoint_sha1": file_digest(Path(checkpoint)) if checkpoint else None,
                "config_path": str(Path(config_path).resolve()) if config_path else None,
                "config_sha1": file_digest(Path(config_path)) if config_path else None,
            },
            versions={"open_clip_torch": package_version("open_clip_torch"), "torch": package_version("torch")},
        )

    def encode_text(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        out = []
        torch = self._torch
        with torch.inference_mode():
            for i in tqdm(range(0, len(texts), batch_size), desc="clip text", disable=not progress, unit="batch"):
                tokens = self.tokenizer(texts[i : i + batch_size]).to(self.device)
                out.append(self.net.encode_text(tokens).float().cpu().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.info.text_dim), np.float32)

    def encode_images(self, images: list[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        out = []
        torch = self._torch
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                # OpenCLIP's transform scales the short side up too: a thin picture is cut to its centre first
                batch = torch.stack([self.preprocess(within_aspect(img).convert("RGB"))
                                     for img in images[i : i + batch_size]])
                out.append(self.net.encode_image(batch.to(self.device)).float().cpu().numpy())
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.info.image_dim), np.float32)
