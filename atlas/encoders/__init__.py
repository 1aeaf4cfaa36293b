"""Choose and build an encoder: for a build (from settings) or for queries (from a lake's manifest)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from atlas.encoders.base import Encoder, EncoderInfo, EncoderUnavailable, l2_normalise

log = logging.getLogger(__name__)

__all__ = ["Encoder", "EncoderInfo", "EncoderUnavailable", "l2_normalise", "build_encoder", "encoder_from_manifest"]


def build_encoder(
    name: str,
    *,
    quantize: str = "int8",
    text_max_tokens: int = 128,
    clip_model: str = "ViT-B-32",
    clip_pretrained: str = "laion2b_s34b_b79k",
    clip_checkpoint: Path | None = None,
    clip_config: Path | None = None,
    trace_dir: Path | None = None,
    make_trace: bool = True,
    allow_download: bool = True,
) -> Encoder:
    """``auto`` takes OpenCLIP when its weights load and falls back to the offline encoder.
    ``trace_dir``: where the offline encoder finds its towers' saved traces, and with ``make_trace``
    saves them (builds pass their lake's model cache). ``allow_download=False`` (``--offline``): OpenCLIP
    only from weights already on disk, without asking the hub."""
    from atlas.encoders.offline import OfflineEncoder
    from atlas.encoders.openclip import OpenClipEncoder

    if name in ("openclip", "auto"):
        try:
            return OpenClipEncoder(
                model=clip_model, pretrained=clip_pretrained, checkpoint=clip_checkpoint,
                config_path=clip_config, quantize=quantize, allow_download=allow_download,
            )
        except EncoderUnavailable as exc:
            if name == "openclip":
                raise
            log.info("OpenCLIP unavailable, using the offline encoder. %s", str(exc).splitlines()[0])
    if name not in ("offline", "auto"):
        raise ValueError(f"unknown encoder {name!r}")
    return OfflineEncoder(quantize=quantize, text_max_tokens=text_max_tokens, trace_dir=trace_dir,
                          make_trace=make_trace)


def encoder_from_manifest(info: dict[str, Any], *, trace_dir: Path | None = None,
                          allow_download: bool = True) -> Encoder:
    """Rebuild the encoder a lake was made with, so query vectors match the stored ones. ``trace_dir``:
    the lake's model cache, whose saved tower traces (if the build left them for these packages) load
    in a fraction of the models' time; nothing is written there. ``allow_download=False`` (the web app):
    OpenCLIP weights only from disk, never fetched while a request waits."""
    started = time.perf_counter()
    settings = info.get("settings") or {}
    if info["name"] == "openclip":
        pretrained = settings.get("pretrained", "")
        encoder = build_encoder(
            "openclip", quantize=info["quantize"], clip_model=settings["model"],
            clip_pretrained="random" if pretrained == "random" else pretrained,
            clip_checkpoint=Path(settings["checkpoint"]) if settings.get("checkpoint") else None,
            clip_config=Path(settings["config_path"]) if settings.get("config_path") else None,
            allow_download=allow_download,
        )
    else:
        encoder = build_encoder("offline", quantize=info["quantize"], text_max_tokens=info["text_max_tokens"],
                                trace_dir=trace_dir, make_trace=False)
    if encoder.info.fingerprint() != info.get("fingerprint"):
        raise EncoderUnavailable(
            f"the encoder available here ({encoder.info.fingerprint()}) differs from the lake's "
            f"({info.get('fingerprint')}); rebuild the lake or install the same model"
        )
    log.info("query encoder %s loaded in %.1fs%s", info.get("name"), time.perf_counter() - started,
             " (the build's saved text trace)" if getattr(encoder, "traced", False) else "")
    return encoder
