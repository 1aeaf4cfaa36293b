"""The encoder seam: every embedding in the lake and every query vector comes through this interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from PIL import Image

from atlas.hashing import sha1_json


class EncoderUnavailable(RuntimeError):
    """The requested encoder cannot be loaded here; the message says how to make it loadable."""


@dataclass(frozen=True)
class EncoderInfo:
    """What the lake records about its encoder; query-time code rebuilds the encoder from this."""

    name: str  # offline | openclip
    text_model: str
    image_model: str
    text_dim: int
    image_dim: int
    shared_space: bool  # text and image vectors comparable (CLIP) → cross-modal search, image zero-shot
    quantize: str
    text_max_tokens: int
    settings: dict[str, Any] = field(default_factory=dict)  # what from_manifest needs to rebuild it
    versions: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Identifies vectors that are interchangeable: same models, settings and quantisation."""
        ident = asdict(self)
        ident.pop("versions")
        return sha1_json(ident)[:16]

    def tower_fingerprint(self, tower: str) -> str:
        """Identifies one tower's cached outputs (``text`` or ``image``), so changing the picture model
        never re-embeds the texts, nor the reverse. Picture caches hold raw features, before the
        collection-fitted map, so they depend only on the picture model and its settings."""
        if tower == "text":
            ident = [self.name, self.text_model, self.text_dim, self.quantize, self.text_max_tokens,
                     self.settings.get("text", {})]
        elif tower == "image":
            ident = [self.name, self.image_model, self.settings.get("image", {})]
        else:
            raise ValueError(f"unknown tower {tower!r}")
        if self.name != "offline":  # one network for both towers: any change touches both
            ident.append(self.fingerprint())
        return sha1_json(ident)[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fingerprint": self.fingerprint()}


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``missing`` (recorded with every lake's encoder)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "missing"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder(ABC):
    info: EncoderInfo

    @abstractmethod
    def encode_text(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""

    @abstractmethod
    def encode_images(self, images: list[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        """Per-image features as cached by the build (see :meth:`image_space`)."""

    def image_space(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Fit the map from cached image features to stored image vectors (none for CLIP).

        The fitted state is saved in the lake so query-time uploads land in the same space.
        """
        return {}

    def to_image_vectors(self, features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        return l2_normalise(features)
