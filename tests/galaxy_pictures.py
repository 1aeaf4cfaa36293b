"""Synthetic galaxy pictures for tests: smooth ellipticals and two-armed spirals, rendered with numpy.

The Galaxy Zoo catalogue has no pictures and the 200 RookByte JPEGs have no licence and belong to other
galaxies, so the tests draw their own: a local "cutout service" answers with a spiral for featured
galaxies and an elliptical for smooth ones. That gives the picture search something real to find (an
uploaded spiral should bring back featured galaxies) without pretending the pictures are SDSS's.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def render(kind: str, *, seed: int, size: int = 160) -> bytes:
    """A JPEG of a ``kind`` ("smooth" or "spiral") galaxy, oriented and sized at random from ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = x - size / 2, y - size / 2
    angle = rng.uniform(0, np.pi)
    xr = x * np.cos(angle) + y * np.sin(angle)
    yr = -x * np.sin(angle) + y * np.cos(angle)
    scale = size * rng.uniform(0.08, 0.14)
    if kind == "smooth":
        q = rng.uniform(0.5, 1.0)
        r = np.sqrt(xr ** 2 + (yr / q) ** 2) / scale
        light = np.exp(-7.67 * (r ** 0.25 - 1))  # de Vaucouleurs profile
        colour = np.array([1.0, 0.85, 0.6])
    elif kind == "spiral":
        r = np.hypot(xr, yr) / scale
        theta = np.arctan2(yr, xr)
        pitch = rng.uniform(0.25, 0.45)
        arms = np.cos(2 * (theta - np.log(r + 1e-6) / pitch)) ** 8
        light = np.exp(-r / 1.2) * (0.4 + 1.6 * arms) + 3 * np.exp(-(r / 0.35) ** 2)
        colour = np.array([0.7, 0.8, 1.0])
    else:
        raise ValueError(kind)
    light = light / light.max()
    img = light[..., None] * colour[None, None, :]
    img += rng.normal(0, 0.03, img.shape)
    for _ in range(rng.integers(0, 4)):  # a few foreground stars
        sx, sy = rng.integers(0, size, 2)
        img[max(sy - 1, 0):sy + 2, max(sx - 1, 0):sx + 2] += 0.8
    pixels = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()
