"""Classify stage: zero-shot categories from the entries' vectors and the taxonomy's prompt vectors —
from the text (``source = 'text'``) and from the picture alone (``source = 'image'``, through the
pictures' text-space vectors made by the alignment stage).

Confidence is a softmax over cosine similarities. The temperature is the encoder's: CLIP's learned
logit scale (100) for OpenCLIP, and 1/0.05 for MiniLM, whose similarities span a narrower range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlas.encoders import Encoder, l2_normalise
from pipeline.taxonomy import IMAGE_TEMPLATES, Taxonomy


@dataclass
class Classification:
    dates: list[str]
    category: list[str]
    confidence: np.ndarray
    top3: list[list[str]]
    top3_scores: np.ndarray


def logit_scale(encoder: Encoder) -> float:
    return 100.0 if encoder.info.shared_space else 20.0


def class_vectors(encoder: Encoder, taxonomy: Taxonomy, templates: tuple[str, ...] = ("{}",)) -> np.ndarray:
    rows = []
    for prompts in taxonomy.categories.values():
        texts = [t.format(p) for p in prompts for t in templates]
        rows.append(encoder.encode_text(texts).mean(axis=0))
    return l2_normalise(np.stack(rows))


def zero_shot(vectors: np.ndarray, classes: np.ndarray, names: list[str], scale: float, dates: list[str]) -> Classification:
    logits = scale * (vectors @ classes.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    k = min(3, len(names))
    order = np.argsort(-probs, axis=1)[:, :k]
    top_scores = np.take_along_axis(probs, order, axis=1).astype(np.float32)
    return Classification(
        dates=dates,
        category=[names[i] for i in order[:, 0]],
        confidence=top_scores[:, 0],
        top3=[[names[i] for i in row] for row in order],
        top3_scores=top_scores,
    )


def picture_class_vectors(encoder: Encoder, taxonomy: Taxonomy) -> np.ndarray:
    """Prompt vectors pictures are compared with: CLIP's picture-caption templates in its shared space;
    the plain prompts for pictures aligned into the offline text space (they land among captions)."""
    return class_vectors(encoder, taxonomy, IMAGE_TEMPLATES if encoder.info.shared_space else ("{}",))


@dataclass(frozen=True)
class ClassVectors:
    """The taxonomy's prompt vectors, saved in the lake so query-time uploads are classified alike."""

    names: list[str]
    text: np.ndarray
    picture: np.ndarray
    scale: float

    @classmethod
    def make(cls, encoder: Encoder, taxonomy: Taxonomy) -> "ClassVectors":
        return cls(taxonomy.names, class_vectors(encoder, taxonomy), picture_class_vectors(encoder, taxonomy),
                   logit_scale(encoder))

    def save(self, path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, names=np.array(self.names), text=self.text, picture=self.picture,
                     logit_scale=np.float32(self.scale))


def classify(classes: ClassVectors, text: tuple[list[str], np.ndarray],
             pictures: tuple[list[str], np.ndarray] | None) -> dict[str, Classification]:
    """Categories from text vectors always; from pictures in the text space (CLIP's own, or the
    offline encoder's learned alignment) when the lake has them."""
    out = {"text": zero_shot(text[1], classes.text, classes.names, classes.scale, text[0])}
    if pictures is not None and len(pictures[0]):
        out["image"] = zero_shot(pictures[1], classes.picture, classes.names, classes.scale, pictures[0])
    return out
