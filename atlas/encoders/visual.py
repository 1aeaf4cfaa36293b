"""Hand-made pixel descriptors: the offline encoder's picture side before EfficientNet-Lite0, kept as
the baseline that bench/picture_meaning.py and bench/visual_descriptors.py measure against.

Astronomy pictures separate well on a few hand-made cues: colour (nebula reds, auroral greens, black
sky), layout (a planetary disc in the middle, a horizon at the bottom), edge structure (landscapes,
spacecraft, diagrams) and spatial frequency (point-like star fields versus smooth gas). Each block is
normalised on its own and weighted, then the collection-level whitening in :func:`fit_space` (PCA on
the archive's own images, saved in the lake) turns them into the stored image vectors. The choice of
blocks and weights was made by measuring neighbour category agreement (see BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from atlas.encoders.space import apply_space, fit_space  # noqa: F401  (the descriptors' collection map)

SIDE = 64
_BLOCK_WEIGHTS = {"colour": 1.0, "gray": 0.6, "layout": 1.0, "gradients": 1.0, "spectrum": 0.6}
DESCRIPTOR_VERSION = "v1"


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _colour_hist(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    chroma = (s > 0.2) & (v > 0.15)
    hb = np.minimum((h * 12).astype(int), 11)
    sb = (s > 0.55).astype(int)
    vb = (v > 0.55).astype(int)
    joint = np.bincount((hb * 4 + sb * 2 + vb)[chroma], minlength=48).astype(np.float32)
    achrom = np.bincount(np.minimum((v[~chroma] * 8).astype(int), 7), minlength=8).astype(np.float32)
    hist = np.concatenate([joint, achrom])
    return np.sqrt(hist / max(hist.sum(), 1.0))


def _gray_stats(gray: np.ndarray) -> np.ndarray:
    hist = np.bincount(np.minimum((gray * 16).astype(int), 15).ravel(), minlength=16).astype(np.float32)
    hist = np.sqrt(hist / hist.sum())
    dark = float((gray < 0.08).mean())
    return np.concatenate([hist, [dark, float(gray.mean()), float(gray.std())]]).astype(np.float32)


def _layout(rgb: Image.Image) -> np.ndarray:
    small = np.asarray(rgb.resize((4, 4), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0
    gray = np.asarray(rgb.convert("L").resize((6, 6), Image.Resampling.BOX), dtype=np.float32).ravel() / 255.0
    return np.concatenate([small - small.mean(), gray - gray.mean()])


def _gradients(gray: np.ndarray, cells: int = 4, bins: int = 8) -> np.ndarray:
    gy, gx = np.gradient(gray)
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    ob = np.minimum((ang / np.pi * bins).astype(int), bins - 1)
    step = gray.shape[0] // cells
    cy, cx = np.indices(gray.shape) // step
    idx = (cy * cells + cx) * bins + ob
    hist = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=cells * cells * bins).astype(np.float32)
    return np.sqrt(hist / max(hist.sum(), 1e-6))


def _spectrum(gray: np.ndarray, bands: int = 8) -> np.ndarray:
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
    yy, xx = np.indices(power.shape)
    c = gray.shape[0] / 2
    r = np.hypot(yy - c, xx - c) / c
    band = np.minimum((r * bands).astype(int), bands - 1)
    energy = np.bincount(band.ravel(), weights=power.ravel(), minlength=bands)
    return np.log1p(energy / max(energy.sum(), 1e-9) * 100).astype(np.float32)


def describe(img: Image.Image) -> np.ndarray:
    """One float32 descriptor per image (dimension :data:`DIM`)."""
    rgb = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.float32) / 255.0
    gray = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    blocks = {
        "colour": _colour_hist(hsv),
        "gray": _gray_stats(gray),
        "layout": _layout(img.convert("RGB")),
        "gradients": _gradients(gray),
        "spectrum": _spectrum(gray),
    }
    return np.concatenate([_unit(b) * _BLOCK_WEIGHTS[k] for k, b in blocks.items()]).astype(np.float32)


DIM = int(describe(Image.new("RGB", (8, 8))).shape[0])
