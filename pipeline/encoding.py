"""How a build turns a kind's inputs into vectors: texts as they are, pictures read from the lake's
files. One module for every process that encodes (the build's own, the encoder's process of
:mod:`pipeline.encoder_host`, Ray's actors through :mod:`pipeline.executors`), so all give the same
vectors, and so the executors and the encoder's process can both import it without importing each
other."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atlas.encoders import Encoder


def load_rgb(source: Path | bytes) -> Image.Image:
    """A picture the build stored itself (thumbnail or cutout), from its path or its file's bytes, as RGB,
    with its file closed."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        return img.convert("RGB")


def encode_with(encoder: Encoder, kind: str, inputs: list[Any], *, root: Path, batch_size: int) -> np.ndarray:
    """The one place that turns inputs into vectors: the local executor, the encoder's process and Ray's
    actors all call it, and so all give the same. Pictures come as paths relative to ``root`` or, on
    Ray, as the files' bytes (actors on other nodes cannot read the driver's disk)."""
    if kind == "text":
        return np.asarray(encoder.encode_text(list(inputs), batch_size=batch_size), np.float32)
    if kind == "image":
        pictures = [load_rgb(x if isinstance(x, bytes) else root / x) for x in inputs]
        return np.asarray(encoder.encode_images(pictures), np.float32)
    raise ValueError(f"unknown input kind {kind!r}; expected text or image")
