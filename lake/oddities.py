"""Reading the anomaly table, and re-ranking it with people's feedback.

The build's ``anomalies`` table gives every entry one score per detector and an unsupervised
``combined`` rank (:mod:`pipeline.anomaly` explains the detectors). People then mark entries
"interesting" or "not interesting"; :func:`rerank` turns those labels into a relevance for every entry —
the labels of the entries with a similar detector profile (a Gaussian kernel over the detectors'
standardised percentiles), trusted as far as the entry is close to a labelled one — and re-weights the
unsupervised score with it: the idea of Astronomaly's neighbour-weighted relevance score (Lochner &
Bassett 2021): the unsupervised ranking proposes, the person's labels re-weight, and entries unlike
anything labelled keep their unsupervised score. Labelled "not interesting" entries go to the end.

Why a kernel and not a classifier: ten labels, nearly all taken from the top of the list, cannot fit a
logistic regression over 16 detectors, while "odd like the ones I marked" needs no fitting. Measured
(BENCHMARKS.md) on pictures swapped between 2 % of entries with 10 labels on the top 10, as precision in
the top 50 of the entries not labelled, on seeds that never chose a setting (the bandwidth and weight
were chosen on seeds 0–2): among entries with a picture it is a small gain, from 0.27 to 0.30 on seeds
5–9 and from 0.26 to 0.35 on seeds 20–29; on the whole list, where the labels also say which kind of
oddity the person is after (pictures at odds with their text, not rare texts), from 0.16 to 0.24 and
from 0.14 to 0.38. The labels re-order what the detectors found; they cannot find what no detector
scores high.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lake.schema import ANOMALY_DETECTORS

CROSS_MODAL = ("picture_vs_text_neighbours", "text_vs_picture_neighbours", "caption_mismatch")

#: Weight of the labels against the unsupervised score, reached at FULL_WEIGHT_LABELS labels.
FEEDBACK_WEIGHT = 0.5
FULL_WEIGHT_LABELS = 10
#: Kernel width: this share of the median squared distance from the entries to the labelled ones.
KERNEL_BANDWIDTH = 0.05

#: What each detector means, for the "why is this odd" line of the Oddities page.
DETECTOR_TEXT = {
    "picture_vs_text_neighbours": "its picture looks less like its text neighbours' pictures than {p} of pictures do",
    "text_vs_picture_neighbours": "its text reads less like its picture neighbours' texts than {p} of texts do",
    "caption_mismatch": "its caption matches its own picture worse than {p} of captions do",
    "cross_modal": "its picture and its text disagree more than for {p} of entries",
}


#: Said first of an entry whose explanation the archive lacks (a ``has_explanation`` column says so).
NO_EXPLANATION = "the archive has no explanation for it; "


def detector_columns(df: pd.DataFrame) -> list[str]:
    """The detectors that scored at least one entry of ``df``."""
    return [c for c in ANOMALY_DETECTORS if c in df and df[c].notna().any()]


def explain(detector: str, percentile: float) -> str:
    if np.isnan(percentile):  # nothing scored it (e.g. a lake of too few entries for the detector)
        return "no detector has scored it"
    p = f"{min(percentile, 0.999):.1%}" if percentile > 0.99 else f"{percentile:.0%}"
    if detector in DETECTOR_TEXT:
        return DETECTOR_TEXT[detector].format(p=p)
    kind, _, method = detector.partition("_")
    how = {"knn": "farther from its nearest neighbours", "lof": "in a sparser neighbourhood",
           "iforest": "easier to isolate"}.get(method, method)
    among = "pictures" if kind == "image" else "entries"  # a percentile among the rows the detector scored
    return f"its {kind} vector is {how} than the {kind} vectors of {p} of {among}"


def percentiles(df: pd.DataFrame) -> pd.DataFrame:
    """Each detector as a percentile in (0, 1] (higher = odder); NaN where a detector does not apply."""
    return df[detector_columns(df)].rank(pct=True)


def percentiles_by_date(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`percentiles`, indexed by the entries' dates (the ``pct`` that :func:`ranked` takes)."""
    return percentiles(df).set_index(df.date)


#: The newest labels a re-rank learns from: each costs a column of distances to every entry, and one
#: person may mark thousands (every mark is kept and shown; only the kernel is bounded).
MAX_LABELS = 500
#: Entries the kernel width (a median of distances) is measured on: all of them up to this many, then an
#: even sample, so a re-rank's memory stays bounded on a lake of millions.
WIDTH_ROWS = 20_000
#: Entries whose kernel rows are computed at once.
CHUNK_ROWS = 8_192


def relevance(x: np.ndarray, anchors: np.ndarray, y: np.ndarray, *, reference: np.ndarray | None = None,
              bandwidth: float = KERNEL_BANDWIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: the kernel-weighted share of "interesting" among the labelled entries (``rel``) and
    how close it is to any labelled one (``conf`` in (0, 1], 1 for a labelled entry itself).

    ``x``: entries × detector percentiles; ``anchors``: the labelled entries' percentiles, ``y`` their
    labels (bool). ``reference``: the entries whose spread standardises the detectors and whose distances
    to the anchors set the kernel's width (default ``x``): the whole archive, so a filtered list is
    re-ranked as the whole one would be. Computed in chunks of rows, so memory stays bounded."""
    reference = x if reference is None else reference
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    a = (anchors - mean) / std
    a2 = (a ** 2).sum(axis=1)

    def dist2(rows: np.ndarray) -> np.ndarray:
        r = (rows - mean) / std
        return np.maximum((r ** 2).sum(axis=1)[:, None] + a2[None, :] - 2 * r @ a.T, 0.0)

    sample = reference if len(reference) <= WIDTH_ROWS else \
        reference[np.linspace(0, len(reference) - 1, WIDTH_ROWS).astype(int)]
    scale = 2 * bandwidth * max(float(np.median(dist2(sample))), 1e-12)
    rel, conf, yf = np.empty(len(x)), np.empty(len(x)), y.astype(float)
    for start in range(0, len(x), CHUNK_ROWS):
        k = np.exp(-dist2(x[start:start + CHUNK_ROWS]) / scale)
        rel[start:start + CHUNK_ROWS] = (k @ yf) / np.maximum(k.sum(axis=1), 1e-300)
        conf[start:start + CHUNK_ROWS] = k.max(axis=1)
    return rel, conf


def rerank(scores: pd.DataFrame, labels: Mapping[str, bool], *, weight: float = FEEDBACK_WEIGHT,
           pct: pd.DataFrame | None = None, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """``scores`` (one row per entry, detector columns, ``combined``) ordered for this person's labels
    (date → interesting?, oldest first: the newest :data:`MAX_LABELS` are learnt from). Without labels:
    the unsupervised order. Adds ``score`` and ``feedback``.

    ``pct``: :func:`percentiles` of ``scores``' rows when the caller has them already. ``reference``: the
    percentiles of every entry, indexed by date, when ``scores`` is a filtered part of them: the labels
    outside the filters still teach the re-rank, and the detectors are standardised over the whole."""
    df = scores.copy()
    base = df["combined"].rank(pct=True).to_numpy()
    own = percentiles(df) if pct is None else pct
    if reference is None:
        reference = own.set_axis(df.date.to_numpy())
    learnt = [d for d in list(labels)[-MAX_LABELS:] if d in reference.index]
    score = base
    if learnt:
        columns = list(own.columns)
        known = reference.reindex(columns=columns).fillna(0.5)
        y = np.array([bool(labels[d]) for d in learnt])
        rel, conf = relevance(own.fillna(0.5).to_numpy(), known.loc[learnt].to_numpy(), y,
                              reference=known.to_numpy())
        # the labels earn their weight: one mark nudges the list, ten or more re-weight it fully
        w = weight * min(1.0, len(learnt) / FULL_WEIGHT_LABELS)
        score = base * (1.0 - w * conf * (1.0 - 2.0 * rel))  # like a labelled "yes": up; like a "no": down
    df["score"] = score
    df["feedback"] = feedback_column(df.date, labels)
    df.loc[df.feedback == False, "score"] -= 10.0  # noqa: E712  (None means unlabelled)
    return df.sort_values(["score", "date"], ascending=[False, True]).reset_index(drop=True)


def feedback_column(dates: pd.Series, labels: Mapping[str, bool]) -> np.ndarray:
    """Each date's label (True / False) or None: a lookup per label, not per entry (11k dates, a few marks)."""
    out = np.full(len(dates), None, dtype=object)
    if labels:
        marked = np.flatnonzero(dates.isin(list(labels)).to_numpy())
        out[marked] = [labels[d] for d in dates.iloc[marked]]
    return out


def ranked(scores: pd.DataFrame, labels: Mapping[str, bool], *, detector: str = "combined",
           pct: pd.DataFrame | None = None, words: bool = True) -> pd.DataFrame:
    """The list people see: ``combined`` re-ranked by their labels, or one detector's own order; with
    ``flagged_by`` (the detector that flags each entry most), its ``flagged_percentile`` and
    ``feedback`` columns, and ``why`` (that in words) unless ``words=False``.

    ``pct``: detector percentiles indexed by date (:meth:`AtlasQueries.anomaly_percentiles`, over the
    whole archive), else computed over ``scores``. A caller that shows one page of the list passes
    ``words=False`` and words only that page (:func:`reason`): 11k sentences cost more than the ranking."""
    pct = percentiles_by_date(scores) if pct is None else pct
    known = detector_columns(pct)  # the lake's detectors, not only those that scored the filtered rows
    if detector != "combined" and detector not in known:
        raise ValueError(f"unknown detector {detector!r}; choose combined or one of {', '.join(known)}")
    own = pct.reindex(scores.date).set_axis(scores.index)
    if detector == "combined":
        out = rerank(scores, labels, pct=own, reference=pct)
    else:
        out = scores[scores[detector].notna()].copy()
        out["score"] = own.loc[out.index, detector]
        out["feedback"] = feedback_column(out.date, labels)
        out = out.sort_values(["score", "date"], ascending=[False, True]).reset_index(drop=True)
    if out.empty:  # the filters match nothing (or nothing this detector scored): an empty list, not an error
        return out.assign(flagged_by=pd.Series(dtype=object), flagged_percentile=pd.Series(dtype=float),
                          **({"why": pd.Series(dtype=object)} if words else {}))
    rows = pct.reindex(out.date)
    if detector != "combined":
        flagged_by = np.full(len(rows), detector, dtype=object)
    else:  # the most extreme of the cross-modal detectors; entries without a picture: their text k-NN
        # score; entries without an explanation: their title's (as the build ranks them)
        cross = [c for c in CROSS_MODAL if c in rows]
        values = rows[cross].fillna(-1.0).to_numpy() if cross else np.full((len(rows), 1), -1.0)
        fallback = np.full(len(rows), "text_knn", dtype=object)
        if "title_knn" in rows:
            no_text = rows["text_knn"].isna().to_numpy() if "text_knn" in rows else np.ones(len(rows), bool)
            fallback[no_text & rows["title_knn"].notna().to_numpy()] = "title_knn"
        flagged_by = np.where(values.max(axis=1) >= 0, np.array(cross or ["text_knn"], dtype=object)[
            values.argmax(axis=1)], fallback)
    out["flagged_by"] = flagged_by
    names, column = np.unique(flagged_by.astype(str), return_inverse=True)
    # a detector the lake has no column for (e.g. no text k-NN where no entry has an explanation): NaN
    table = np.column_stack([rows.to_numpy(dtype=float), np.full(len(rows), np.nan)])
    where = np.array([rows.columns.get_loc(c) if c in rows.columns else table.shape[1] - 1 for c in names])
    out["flagged_percentile"] = table[np.arange(len(rows)), where[column]]
    if words:
        out["why"] = reasons(out)
    return out


def export_frame(ranked_list: pd.DataFrame, *, limit: int) -> pd.DataFrame:
    """The first ``limit`` rows of a :func:`ranked` list as a download holds them: every detector's score
    and the reason in words, without the columns only the gallery uses."""
    df = ranked_list.head(limit).drop(columns=["url", "media_type"], errors="ignore")
    df["why"] = reasons(df)
    return df


def reason(row: Mapping) -> str:
    """Why one row of :func:`ranked` is odd, in words."""
    return _why(row["flagged_by"], float(row["flagged_percentile"]), bool(row.get("has_explanation", True)))


def reasons(df: pd.DataFrame) -> list[str]:
    """:func:`reason` for every row of a :func:`ranked` frame."""
    texted = df["has_explanation"] if "has_explanation" in df else np.ones(len(df), bool)
    return [_why(by, float(p), bool(has)) for by, p, has in zip(df["flagged_by"], df["flagged_percentile"], texted)]


def _why(detector: str, percentile: float, has_explanation: bool) -> str:
    said = explain(detector, percentile)
    return said if has_explanation else NO_EXPLANATION + said
