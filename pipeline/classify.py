"""Classify stage: zero-shot categories from the entries' vectors and the taxonomy's prompt vectors —
from the text (``source = 'text'``) and from the picture alone (``source = 'image'``). The prompt
vectors are first adapted to the collection without labels (:func:`adapt`); a word classifier
self-trained on their confident guesses then gives the text categories (:func:`text_probabilities`,
:mod:`pipeline.text_classifier`).

A picture's category comes from CLIP's picture vector where the encoder has a shared space; offline,
from the vote of its look-alikes' caption categories through the alignment head, blended with a linear
probe trained on those categories (:meth:`atlas.encoders.align.AlignHead.category_votes`,
:mod:`pipeline.picture_probe`; settings chosen per build without labels).

The dense zero-shot's confidence is a softmax over cosine similarities. The temperature is the
encoder's: CLIP's learned logit scale (100) for OpenCLIP, and 1/0.05 for MiniLM, whose similarities
span a narrower range.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from atlas.encoders import Encoder, l2_normalise
from atlas.encoders.align import AlignHead, CategoryVote, PictureProbe, class_probabilities, choose_vote
from atlas.hashing import sha1_json
from lake import atomic
from pipeline import picture_probe, text_classifier
from pipeline.taxonomy import IMAGE_TEMPLATES, Taxonomy
from pipeline.text_classifier import TextClassifier

log = logging.getLogger(__name__)


@dataclass
class Classification:
    dates: list[str]
    category: list[str]
    confidence: np.ndarray
    top3: list[list[str]]
    top3_scores: np.ndarray


def logit_scale(encoder: Encoder) -> float:
    return 100.0 if encoder.info.shared_space else 20.0


#: What the kept prompt vectors' file names start with (:func:`class_prompts_file`).
PROMPTS_PREFIX = "class-prompts-"


def class_prompts_file(cache: Path, encoder: Encoder, taxonomy: Taxonomy, templates: tuple[str, ...]) -> Path:
    """Where :func:`class_vectors` keeps these prompts' vectors: keyed by the encoder's fingerprint, the
    templates and the categories in their order."""
    key = sha1_json([encoder.info.fingerprint(), list(templates), list(taxonomy.categories.items())])[:16]
    return cache / f"{PROMPTS_PREFIX}{key}.npz"


def prune_class_prompts(cache: Path, *, keep: set[Path]) -> None:
    """Remove kept prompt vectors other than ``keep``: those of an earlier taxonomy, encoder or file
    format would otherwise stay in the lake's cache for good."""
    for old in cache.glob(f"{PROMPTS_PREFIX}*"):
        if old not in keep:
            old.unlink(missing_ok=True)
            log.info("removed stale class prompt vectors %s", old.name)


def class_vectors(encoder: Encoder, taxonomy: Taxonomy, templates: tuple[str, ...] = ("{}",), *,
                  cache: Path | None = None) -> np.ndarray:
    """Each category's prompts (through ``templates``) encoded together and averaged, unit length.

    ``cache``: a folder (a lake's model cache) that keeps them under a key of the encoder's fingerprint,
    the prompts and the templates. Encoding them category by category cost a daily build ≈ 0.9 s for the
    same vectors every time; they are not batched together instead, because the int8 tower quantises
    its activations per batch, so other batches would give (slightly) other vectors."""
    # the categories in their order (a JSON object's keys would be sorted): the rows follow that order
    categories = list(taxonomy.categories.items())
    path = class_prompts_file(cache, encoder, taxonomy, templates) if cache is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as kept:
                if kept["names"].tolist() == [name for name, _ in categories]:
                    return kept["vectors"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # torn or foreign
            log.info("kept class prompt vectors %s unreadable (%s)", path.name, exc)
    rows = []
    for _, prompts in categories:
        texts = [t.format(p) for p in prompts for t in templates]
        rows.append(encoder.encode_text(texts).mean(axis=0))
    vectors = l2_normalise(np.stack(rows))
    if path is not None:
        atomic.write_npz(path, {"names": np.array([name for name, _ in categories], dtype=str), "vectors": vectors})
    return vectors


#: Class-vector adaptation, chosen on the tuning labels (bench/data/labelled_categories.csv) and scored
#: on labels never tuned on (labelled_pictures.csv): text top-1 0.744 → 0.820 on the tuning set and
#: 0.646 → 0.696 on the held-out set; picture zero-shot (held-out pictures) 0.494 → 0.542.
ADAPT = {"rounds": 3, "top_share": 0.2, "prompt_weight": 1.0}


def adapt(prompts: np.ndarray, vectors: np.ndarray, *, rounds: int = ADAPT["rounds"],
          top_share: float = ADAPT["top_share"], prompt_weight: float = ADAPT["prompt_weight"]) -> np.ndarray:
    """Move each class vector towards the collection's own wording of that class (no labels used).

    Each round assigns every vector to its nearest class, then sets a class vector to
    ``prompt_weight · prompt + mean of its most confident `top_share` members`` (unit length). The
    prompts say what a class means; the members say how this archive writes about it, which the short
    prompts miss. A class nobody is assigned to keeps its prompt.
    """
    vectors = np.asarray(vectors, np.float32)
    classes = l2_normalise(prompts)
    if len(vectors) == 0:
        return classes
    for _ in range(rounds):
        sims = vectors @ classes.T
        nearest = sims.argmax(axis=1)
        new = []
        for c in range(len(classes)):
            members = np.flatnonzero(nearest == c)
            if len(members) == 0:
                new.append(l2_normalise(prompts[c:c + 1])[0])
                continue
            top = members[np.argsort(-sims[members, c])[:max(1, int(top_share * len(members)))]]
            centre = l2_normalise(vectors[top].mean(axis=0, keepdims=True))[0]
            new.append(prompt_weight * l2_normalise(prompts[c:c + 1])[0] + centre)
        classes = l2_normalise(np.stack(new))
    return classes


def zero_shot(vectors: np.ndarray, classes: np.ndarray, names: list[str], scale: float, dates: list[str]) -> Classification:
    return ranked(class_probabilities(vectors, classes, scale), names, dates)


def ranked(probs: np.ndarray, names: list[str], dates: list[str]) -> Classification:
    """Top category, its probability and the top three of each row of class probabilities."""
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


#: The templates CLIP's text tower encodes text classes through: the prompts as written (not measured
#: against others: CLIP weights cannot be had where the settings were chosen).
TEXT_TEMPLATES: tuple[str, ...] = ("{}",)
#: The offline text tower's: each prompt as written and as a picture's caption, all averaged. Chosen on
#: the tuning labels (``bench/text_categories.py``; 392 entries since 2026-12-08, when they first preferred
#: it: top-1 0.809 against the prompts as written 0.801; on the labels never tuned on 0.761 against 0.742).
OFFLINE_TEXT_TEMPLATES: tuple[str, ...] = ("{}", "An astronomy picture of {}.")


def text_templates(encoder: Encoder) -> tuple[str, ...]:
    """The templates an encoder's text classes are encoded through (:data:`OFFLINE_TEXT_TEMPLATES` for the
    offline tower, :data:`TEXT_TEMPLATES` in CLIP's shared space)."""
    return TEXT_TEMPLATES if encoder.info.shared_space else OFFLINE_TEXT_TEMPLATES


def picture_templates(encoder: Encoder) -> tuple[str, ...]:
    """CLIP's picture-caption templates in its shared space; the text classes' templates for pictures
    aligned into the offline text space (they land among captions)."""
    return IMAGE_TEMPLATES if encoder.info.shared_space else text_templates(encoder)


def picture_class_vectors(encoder: Encoder, taxonomy: Taxonomy, *, cache: Path | None = None) -> np.ndarray:
    """Prompt vectors pictures are compared with (through :func:`picture_templates`)."""
    return class_vectors(encoder, taxonomy, picture_templates(encoder), cache=cache)


@dataclass(frozen=True)
class ClassVectors:
    """The taxonomy's prompt vectors, saved in the lake so query-time uploads are classified alike."""

    names: list[str]
    text: np.ndarray
    picture: np.ndarray
    scale: float
    vote: CategoryVote | None = None  # offline lakes: how pictures' look-alikes vote (None: CLIP's own space)
    vote_scores: dict[str, float] | None = None  # the label-free inner-CV score of every vote setting tried
    caption_probs: np.ndarray | None = None  # with ``vote``: the head's training captions' class probabilities
    probe: PictureProbe | None = None  # with ``vote``: the linear probe blended with it (None: the vote alone)
    probe_report: dict | None = None  # what the manifest records of the probe

    @classmethod
    def make(cls, encoder: Encoder, taxonomy: Taxonomy, *, texts: np.ndarray,
             pictures: np.ndarray | None = None, cache: Path | None = None) -> "ClassVectors":
        """Prompt vectors adapted to the collection (:func:`adapt`): text classes from the texts; picture
        classes from the pictures in CLIP's space, and the text classes for pictures aligned into the
        offline text space (they are means of captions, so the caption-adapted classes fit them).
        ``cache``: where the prompts' vectors are kept between builds (:func:`class_vectors`)."""
        text = adapt(class_vectors(encoder, taxonomy, text_templates(encoder), cache=cache), texts)
        if encoder.info.shared_space and pictures is not None and len(pictures):
            picture = adapt(picture_class_vectors(encoder, taxonomy, cache=cache), pictures)
        elif encoder.info.shared_space:
            picture = picture_class_vectors(encoder, taxonomy, cache=cache)
        else:
            picture = text
        if cache is not None:
            used = {text_templates(encoder), picture_templates(encoder)}
            prune_class_prompts(cache, keep={class_prompts_file(cache, encoder, taxonomy, t) for t in used})
        return cls(taxonomy.names, text, picture, logit_scale(encoder))

    def voting(self, head: AlignHead, caption_probs: np.ndarray, *, space: str,
               kept_probe: PictureProbe | None = None, refit: bool = False) -> "ClassVectors":
        """These classes with the look-alikes' vote of an offline alignment ``head`` and the linear probe
        blended with it, their settings chosen without labels (:func:`atlas.encoders.align.choose_vote`,
        :func:`pipeline.picture_probe.fit_probe`) on the head's training captions' class probabilities
        ``caption_probs`` (in the head's order), which are kept for uploads. ``space``: the picture
        space's fingerprint; ``kept_probe``: the published probe, kept while it still applies (unless
        ``refit``, see :func:`pipeline.picture_probe.refit_reason`)."""
        if not len(head.pictures):
            return self
        vote, scores = choose_vote(head, caption_probs)
        probe, report = picture_probe.fit_probe(head, caption_probs, names=self.names, vote=vote, space=space,
                                                 kept=kept_probe, refit=refit)
        return replace(self, vote=vote, vote_scores=scores, caption_probs=np.asarray(caption_probs, np.float32),
                       probe=probe, probe_report=report)

    def save(self, path) -> None:
        vote = ({"vote_k": np.int64(self.vote.k), "vote_tau": np.float32(self.vote.tau),
                 "caption_probs": self.caption_probs, **(self.probe.fields() if self.probe else {})}
                if self.vote else {})
        with open(path, "wb") as fh:
            np.savez(fh, names=np.array(self.names), text=self.text, picture=self.picture,
                     logit_scale=np.float32(self.scale), **vote)


def text_probabilities(*, texts: list[str], vectors: np.ndarray, classes: ClassVectors, kept: TextClassifier | None,
                       key: str, refit: bool, min_texts: int = text_classifier.MIN_TEXTS,
                       ) -> tuple[np.ndarray, TextClassifier | None, dict]:
    """The text categories' class probabilities (texts × classes): the word classifier self-trained on
    the dense zero-shot's confident guesses (:mod:`pipeline.text_classifier`) — the published one when
    it still applies (it reads only the texts it has not seen), else a new fit — or the dense zero-shot
    alone when there are fewer than ``min_texts`` texts (or too few shared words). Returns the probabilities, the classifier to publish (None:
    none) and what the manifest records."""
    report = {"pseudo_label_share": text_classifier.SHARE, "C": text_classifier.C,
              "refit_share": text_classifier.REFIT_SHARE}
    reason = text_classifier.refit_reason(kept, texts=len(texts), key=key, refit=refit)
    if len(texts) < min_texts:
        reason, kept = "too few texts", None
    if reason is None:
        probs, new, model = kept.classify(texts)
        how = f"kept from an earlier build ({new} new texts read)"
    else:
        zero = class_probabilities(vectors, classes.text, classes.scale)
        fitted = text_classifier.fit(texts, zero, names=classes.names, key=key, min_texts=min_texts)
        if fitted is None:
            return zero, None, {"method": f"dense zero-shot (fewer than {min_texts} texts, or too few shared "
                                          "words, to learn a word classifier from)"}
        (model, probs), how = fitted, f"fitted ({reason})"
    return probs, model, report | {
        "method": "word classifier self-trained on the dense zero-shot's confident guesses",
        "fitted_on": model.fitted_on, "words": len(model.terms), "model": how}


def classify(classes: ClassVectors, text: tuple[list[str], np.ndarray],
             pictures: tuple[list[str], np.ndarray] | None, *, head: AlignHead | None = None) -> dict[str, Classification]:
    """Categories from the texts' class probabilities ``text`` (dates, texts × classes) always; from
    pictures when the lake has them. ``pictures`` are in the text space (CLIP's own picture vectors) or,
    given the alignment ``head`` and a vote in ``classes``, the offline picture vectors the head votes
    with (each training picture without its own caption)."""
    out = {"text": ranked(text[1], classes.names, text[0])}
    if pictures is None or not len(pictures[0]):
        return out
    if head is not None and classes.vote is not None:
        probs = head.category_votes(pictures[1], classes.caption_probs, vote=classes.vote, dates=pictures[0],
                                    probe=classes.probe)
        out["image"] = ranked(probs, classes.names, pictures[0])
    else:
        out["image"] = zero_shot(pictures[1], classes.picture, classes.names, classes.scale, pictures[0])
    return out
