"""Text categories refined by self-training: the zero-shot's confident guesses teach a word classifier.

The dense zero-shot (:func:`pipeline.classify.zero_shot` over adapted prompt vectors) reads an entry
through a 128-word-piece window of a small sentence model. Its most confident assignments are mostly
right, and the words of those entries — "nebula", "Cassini", "corona", "rover" across the whole
explanation — say a great deal about the entries it is unsure of. So each build:

1. takes, per class, the ``share`` of the entries the zero-shot assigns to it with the widest margin
   between its best and second-best class (at least two per class) as pseudo-labels;
2. fits a multinomial logistic regression on TF-IDF word features of every entry's title and full
   explanation to those pseudo-labels;
3. uses its probabilities as the text categories (and as the caption categories the pictures' look-alikes
   vote with).

No hand label is involved. It needs many texts to learn words from: collections smaller than
:data:`MIN_TEXTS` (``--word-classifier-min``) keep the dense zero-shot's categories. The settings were chosen on the tuning labels
(``bench/data/labelled_categories.csv``, 172 entries then) and scored on labels never tuned on
(``labelled_pictures.csv``, 322 entries) by ``bench/text_categories.py``: top-1 0.808 → 0.826 on the
tuning set and 0.693 → 0.742 on the never-tuned set. Shares 0.2–1.0 were tried (0.6 scored best on the
tuning set); a second round of self-training on its own guesses lowered both scores. Word pairs
(bigrams) scored 0.849 on the tuning set (0.733 never tuned) at 7× the fitting time (17 s); within one
standard error (≈ 0.03) of words alone, the build keeps words alone (fit 2.4 s, all 11k texts
classified in 0.8 s). On the 392 tuning labels of 2026-12-08, with the prompts through
:data:`pipeline.classify.OFFLINE_TEXT_TEMPLATES`, share 0.6 still scores best (0.809; 0.8: 0.804) and
word pairs do not help (0.806).

The model is stored in the lake (``models/text_classifier.npz``: vocabulary, idf, weights) so that a
build which only adds entries classifies them with the published model and every existing entry keeps
its categories (as maps keep their points); it is re-fitted with ``--refit``, when the taxonomy or the
text encoder changes, or when the entries added since the fit reach :data:`REFIT_SHARE` of those it was
fitted on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from atlas.hashing import sha1_text

log = logging.getLogger(__name__)

#: Pseudo-label share per class and the logistic regression's inverse regularisation (see the module doc).
SHARE = 0.6
C = 1.0
#: Fewer texts than this and the zero-shot stands alone (``--word-classifier-min``). Measured by fitting on
#: random samples of the archive (8 per size, ``bench/text_categories.py``) and scoring the labelled entries
#: among them: on the tuning labels the classifier scored below the dense zero-shot at every size up to
#: 4,000 texts (0.802 against 0.816 there) and above it at 8,000 (0.825 against 0.812) and on the whole
#: archive; the default sits between. (On the never-tuned labels it led from 1,000 texts; they choose nothing.)
MIN_TEXTS = 6000
#: Re-fit once the entries added since the fit reach this share of those it was fitted on.
REFIT_SHARE = 0.05
_VECTORISER = {"sublinear_tf": True, "min_df": 3, "max_df": 0.5, "stop_words": "english", "dtype": np.float32}


def pseudo_labels(probs: np.ndarray, *, share: float = SHARE) -> tuple[np.ndarray, np.ndarray]:
    """(rows, classes) of the zero-shot's confident guesses: per class, the ``share`` of its members with
    the widest margin between their best and second-best class (at least two; fewer if it has fewer)."""
    probs = np.asarray(probs)
    best = probs.argmax(axis=1)
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.hstack([np.zeros_like(probs), probs])
    margin = top2[:, 1] - top2[:, 0]
    rows = []
    for c in range(probs.shape[1]):
        members = np.flatnonzero(best == c)
        if len(members):
            # stable sort on the negated margin: ties keep row order, so the choice is deterministic
            rows.append(members[np.argsort(-margin[members], kind="stable")[:max(2, int(share * len(members)))]])
    picked = np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    return picked, best[picked]


#: sklearn's default word pattern: tokens of two or more word characters, after lower-casing.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class TextClassifier:
    """A fitted word classifier: TF-IDF vocabulary and idf, logistic-regression weights per class, and
    the class probabilities of the texts the last build classified (by text hash), so the next build
    only reads the new ones."""

    names: list[str]  # every class of the taxonomy, in its order (columns of :meth:`probabilities`)
    terms: np.ndarray  # vocabulary, in feature order
    idf: np.ndarray
    coef: np.ndarray  # (classes seen in the pseudo-labels, terms)
    intercept: np.ndarray
    classes: np.ndarray  # column in ``names`` of each row of ``coef``
    key: str  # what the fit depends on besides the texts (taxonomy, encoder): a changed key re-fits
    fitted_on: int  # texts the vocabulary and weights were fitted on
    ngrams: tuple[int, int] = (1, 1)  # word n-gram lengths of the vocabulary
    known_sha: np.ndarray = field(default_factory=lambda: np.zeros(0, "U40"))  # sha1 of each known text
    known_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def classify(self, texts: list[str]) -> tuple[np.ndarray, int, "TextClassifier"]:
        """(texts × classes probabilities, how many texts were new, this classifier remembering exactly
        these texts): known texts (same hash) take their remembered probabilities, the others are read by
        :meth:`probabilities`. Each text is hashed once."""
        row = {str(h): i for i, h in enumerate(self.known_sha)}
        shas = np.array([sha1_text(t) for t in texts], "U40")
        at = np.array([row.get(str(h), -1) for h in shas], np.int64)
        out = np.zeros((len(texts), len(self.names)), np.float32)
        if len(self.known_probs):
            out[at >= 0] = self.known_probs[at[at >= 0]]
        new = np.flatnonzero(at < 0)
        if len(new):
            out[new] = self.probabilities([texts[i] for i in new])
        return out, len(new), replace(self, known_sha=shas, known_probs=out)

    def remembering(self, texts: list[str], probs: np.ndarray) -> "TextClassifier":
        """This classifier, remembering ``texts``' class probabilities (and only those)."""
        return replace(self, known_sha=np.array([sha1_text(t) for t in texts], "U40"),
                       known_probs=np.asarray(probs, np.float32))

    def features(self, texts: list[str]):
        """TF-IDF rows of ``texts`` (scipy CSR): sklearn's ``TfidfVectorizer.transform`` for word
        vocabularies, computed here (sublinear tf × idf, unit rows; equal to sklearn's within float
        rounding, tested) so a daily build that classifies a few new texts does not import scikit-learn
        (≈ 0.9 s of its 10 s budget). Word pairs go through sklearn."""
        import scipy.sparse as sp

        if tuple(self.ngrams) != (1, 1):
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = TfidfVectorizer(vocabulary={str(t): i for i, t in enumerate(self.terms)}, ngram_range=self.ngrams,
                                  **_VECTORISER)
            vec.idf_ = self.idf
            return vec.transform(texts)
        index = {str(t): i for i, t in enumerate(self.terms)}
        rows, cols = [], []
        for r, text in enumerate(texts):
            hits = [index[w] for w in _TOKEN.findall(text.lower()) if w in index]
            rows += [r] * len(hits)
            cols += hits
        counts = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(texts), len(index)))
        counts.sum_duplicates()
        counts.data = (1 + np.log(counts.data)) * self.idf[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        norms[norms == 0] = 1
        return sp.diags(1 / norms).astype(np.float32) @ counts

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(texts, classes) probabilities; rows sum to 1, classes absent from the pseudo-labels get 0."""
        return self._softmax(self.features(texts))

    def _softmax(self, x) -> np.ndarray:
        logits = np.asarray(x @ self.coef.T, np.float64) + self.intercept
        if len(self.classes) == 1:  # one class seen: it takes every text
            part = np.ones((x.shape[0], 1))
        else:
            logits -= logits.max(axis=1, keepdims=True)
            part = np.exp(logits)
            part /= part.sum(axis=1, keepdims=True)
        out = np.zeros((x.shape[0], len(self.names)), np.float32)
        out[:, self.classes] = part
        return out

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, names=np.array(self.names), terms=self.terms, idf=self.idf, coef=self.coef,
                     intercept=self.intercept, classes=self.classes, key=np.array(self.key),
                     fitted_on=np.int64(self.fitted_on), ngrams=np.array(self.ngrams, np.int64),
                     known_sha=self.known_sha, known_probs=self.known_probs)

    @classmethod
    def load(cls, path: Path) -> "TextClassifier":
        with np.load(path) as z:
            return cls(names=[str(n) for n in z["names"]], terms=z["terms"], idf=z["idf"], coef=z["coef"],
                       intercept=z["intercept"], classes=z["classes"], key=str(z["key"]),
                       fitted_on=int(z["fitted_on"]), ngrams=tuple(int(n) for n in z["ngrams"]),
                       known_sha=z["known_sha"], known_probs=z["known_probs"])


def fit(texts: list[str], zero_shot: np.ndarray, *, names: list[str], key: str, share: float = SHARE,
        c: float = C, ngrams: tuple[int, int] = (1, 1), min_texts: int = MIN_TEXTS) -> tuple[TextClassifier, np.ndarray] | None:
    """Self-train on the zero-shot probabilities ``zero_shot`` (texts × classes): the classifier (it
    remembers the texts) and the texts' class probabilities; None when there is too little text (fewer
    than ``min_texts``, or no word in at least three texts)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len(texts) < min_texts:
        return None
    vec = TfidfVectorizer(ngram_range=ngrams, **_VECTORISER)
    try:
        x = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary: every word too rare or too common
        return None
    rows, labels = pseudo_labels(zero_shot, share=share)
    seen = np.unique(labels)
    if len(seen) < 2:
        coef, intercept = np.zeros((1, x.shape[1]), np.float32), np.zeros(1)
    else:
        model = LogisticRegression(C=c, max_iter=1000).fit(x[rows], labels)
        coef, intercept = model.coef_.astype(np.float32), model.intercept_
        seen = model.classes_
        if len(seen) == 2:  # two classes: one logit z for the second; softmax([-z/2, z/2]) = its sigmoid
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    terms = np.asarray(vec.get_feature_names_out(), dtype=str)  # not object: the lake's npz never pickles
    log.info("text categories: word classifier fitted on %d pseudo-labels of %d texts (%d words)",
             len(rows), len(texts), len(terms))
    fitted = TextClassifier(names=list(names), terms=terms, idf=vec.idf_.astype(np.float32), coef=coef,
                            intercept=np.asarray(intercept, np.float64), classes=np.asarray(seen, np.int64),
                            key=key, fitted_on=len(texts), ngrams=tuple(ngrams))
    probs = fitted._softmax(x)
    return fitted.remembering(texts, probs), probs


def refit_reason(kept: TextClassifier | None, *, texts: int, key: str, refit: bool) -> str | None:
    """Why the published classifier cannot classify this build's texts (None: it can)."""
    if refit:
        return "--refit"
    if kept is None:
        return "no published classifier"
    if kept.key != key:
        return "the taxonomy or the text encoder changed"
    if texts - kept.fitted_on >= max(1, REFIT_SHARE * kept.fitted_on) or texts < kept.fitted_on:
        return f"{texts} texts against {kept.fitted_on} at its fit"
    return None
