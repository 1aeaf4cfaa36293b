"""Reading the anomaly table, and re-ranking it with people's feedback.

The build's ``anomalies`` table gives every entry one score per detector and an unsupervised
``combined`` rank (:mod:`pipeline.anomaly` explains the detectors). People then mark entries
"interesting" or "not interesting"; :func:`rerank` learns from those labels which detectors matter for
what this person calls interesting (a logistic regression on the detectors' percentiles, balanced
classes) and blends its probability with the unsupervised score — the idea of Astronomaly's
"relevance" score (Lochner & Bassett 2021): the unsupervised ranking proposes, the person's labels
re-weight. Labelled "not interesting" entries go to the end of the list.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lake.schema import ANOMALY_DETECTORS

CROSS_MODAL = ("picture_vs_text_neighbours", "text_vs_picture_neighbours", "caption_mismatch")

#: Weight of the feedback model against the unsupervised score, reached at FULL_WEIGHT_LABELS labels.
FEEDBACK_WEIGHT = 0.6
FULL_WEIGHT_LABELS = 10

#: What each detector means, for the "why is this odd" line of the Oddities page.
DETECTOR_TEXT = {
    "picture_vs_text_neighbours": "its picture looks less like its text neighbours' pictures than {p} of pictures do",
    "text_vs_picture_neighbours": "its text reads less like its picture neighbours' texts than {p} of texts do",
    "caption_mismatch": "its caption matches its own picture worse than {p} of captions do",
    "cross_modal": "its picture and its text disagree more than for {p} of entries",
}


def detector_columns(df: pd.DataFrame) -> list[str]:
    """The detectors that scored at least one entry of ``df``."""
    return [c for c in ANOMALY_DETECTORS if c in df and df[c].notna().any()]


def explain(detector: str, percentile: float) -> str:
    p = f"{min(percentile, 0.999):.1%}" if percentile > 0.99 else f"{percentile:.0%}"
    if detector in DETECTOR_TEXT:
        return DETECTOR_TEXT[detector].format(p=p)
    kind, _, method = detector.partition("_")
    how = {"knn": "farther from its nearest neighbours", "lof": "in a sparser neighbourhood",
           "iforest": "easier to isolate"}.get(method, method)
    return f"its {kind} vector is {how} than {p} of entries'"


def percentiles(df: pd.DataFrame) -> pd.DataFrame:
    """Each detector as a percentile in (0, 1] (higher = odder); NaN where a detector does not apply."""
    return df[detector_columns(df)].rank(pct=True)


def rerank(scores: pd.DataFrame, labels: Mapping[str, bool], *, weight: float = FEEDBACK_WEIGHT,
           pct: pd.DataFrame | None = None) -> pd.DataFrame:
    """``scores`` (one row per entry, detector columns, ``combined``) ordered for this person's labels
    (date → interesting?). Without labels: the unsupervised order. Adds ``score`` and ``feedback``.
    ``pct``: :func:`percentiles` of ``scores`` when the caller has them already."""
    df = scores.copy()
    base = df["combined"].rank(pct=True).to_numpy()
    prob = np.full(len(df), 0.5)
    labelled = df.date.isin(list(labels)).to_numpy()
    if labelled.any():
        x = (percentiles(df) if pct is None else pct).fillna(0.5).to_numpy()
        y = np.array([bool(labels[d]) for d in df.date[labelled]])
        if y.all() or not y.any():  # one class only: similarity to the labelled entries' profile
            centre = x[labelled].mean(axis=0)
            sim = 1.0 - np.abs(x - centre).mean(axis=1) * 2
            prob = np.clip(sim if y.all() else 1.0 - sim, 0, 1)
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500).fit(x[labelled], y)
            prob = model.predict_proba(x)[:, 1]
    # the model earns its weight with labels: one mark nudges the list, ten or more re-weight it fully
    weight *= min(1.0, labelled.sum() / FULL_WEIGHT_LABELS)
    df["score"] = (1 - weight) * base + weight * prob
    df["feedback"] = [labels.get(d) for d in df.date]
    df.loc[df.feedback == False, "score"] -= 10.0  # noqa: E712  (None means unlabelled)
    return df.sort_values(["score", "date"], ascending=[False, True]).reset_index(drop=True)


def ranked(scores: pd.DataFrame, labels: Mapping[str, bool], *, detector: str = "combined") -> pd.DataFrame:
    """The list people see: ``combined`` re-ranked by their labels, or one detector's own order; with
    ``why`` (the detector that flags each entry most, in words) and ``feedback`` columns."""
    if detector != "combined" and detector not in detector_columns(scores):
        raise ValueError(f"unknown detector {detector!r}; choose combined or one of {', '.join(detector_columns(scores))}")
    pct = percentiles(scores)
    if detector == "combined":
        out = rerank(scores, labels, pct=pct)
    else:
        out = scores[scores[detector].notna()].copy()
        out["score"] = pct.loc[out.index, detector]
        out["feedback"] = [labels.get(d) for d in out.date]
        out = out.sort_values(["score", "date"], ascending=[False, True]).reset_index(drop=True)
    rows = pct.set_index(scores.date).reindex(out.date)
    if detector != "combined":
        flagged_by = np.full(len(rows), detector, dtype=object)
    else:  # the most extreme of the cross-modal detectors; text-only entries: their text k-NN score
        cross = [c for c in CROSS_MODAL if c in rows]
        values = rows[cross].fillna(-1.0).to_numpy() if cross else np.full((len(rows), 1), -1.0)
        flagged_by = np.where(values.max(axis=1) >= 0, np.array(cross or ["text_knn"], dtype=object)[
            values.argmax(axis=1)], "text_knn")
    chosen = rows.to_numpy()[np.arange(len(rows)), [rows.columns.get_loc(c) for c in flagged_by]]
    out["flagged_by"] = flagged_by
    out["why"] = [explain(c, float(v)) for c, v in zip(flagged_by, chosen)]
    return out
