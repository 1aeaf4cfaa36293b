"""Single-modality vs multimodal models on the archive: which inputs predict what, and does fusion help?

Targets the data honestly supports (no Galaxy Zoo target: there are no real galaxy pictures here):
  * publication **year** of an entry with a picture (2,998 entries; regression: RMSE, MAE, R²);
  * its **category**, from the hand-labelled sample (bench/data/labelled_*.csv restricted to entries with a
    picture; classification: accuracy, macro-F1).
Inputs are the built lake's vectors: ``image`` (EfficientNet-Lite0 through the collection's PCA space:
pixels only, no caption ever touches them) and ``text`` (MiniLM on title + explanation). Models: a
linear model per modality (ridge / logistic regression, regularisation chosen by inner CV), early
fusion (the same model on the concatenation), late fusion (averaged predictions), stacking (a linear
model on the single-modality models' inner out-of-fold predictions) and a small MLP head on the
concatenation. Evaluation: repeated k-fold (5 folds × 3 repeats) with whole months kept together, so
near-duplicate entries of the same week never straddle train and test. Fusion is compared with the
best single modality by a paired bootstrap over entries (95 % interval of the difference in per-entry
absolute error, or in per-entry correctness); a gain is claimed only when the interval excludes 0.

Scalability: fit/predict time against N (1k → 100k, synthetic data of the same width beyond the real
2,998), and precision against time for the nearest-neighbour index (exact search vs LanceDB IVF_PQ).

Usage: python bench/multimodal.py [--lake DIR] [--repeats 3] [--scale 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import lake_label, save  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402
from lake.reader import LakeReader  # noqa: E402

LABELS = [REPO / "bench" / "data" / "labelled_pictures.csv", REPO / "bench" / "data" / "labelled_categories.csv"]
FOLDS = 5
N_BOOT = 2000


# -- data ----------------------------------------------------------------------------------------------
def load(lake: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    reader = LakeReader.open(lake)
    img_dates, img = reader.vectors("image")
    txt_dates, txt = reader.vectors("text")
    pos = {d: i for i, d in enumerate(txt_dates)}
    keep = [i for i, d in enumerate(img_dates) if d in pos]
    dates = [img_dates[i] for i in keep]
    frame = pd.DataFrame({"date": dates})
    frame["year"] = [int(d[:4]) + (int(d[5:7]) - 0.5) / 12 for d in dates]
    frame["month"] = [d[:7] for d in dates]
    return frame, img[keep], txt[[pos[d] for d in dates]]


def month_folds(groups: np.ndarray, seed: int, k: int = FOLDS) -> np.ndarray:
    """Fold number per row: whole months to one fold, months shuffled by ``seed``."""
    months = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(months))
    fold_of = {m: i % k for i, m in zip(range(len(months)), months[order])}
    return np.array([fold_of[g] for g in groups])


# -- models --------------------------------------------------------------------------------------------
def _ridge():
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-2, 3, 11))


def _logistic():
    from sklearn.linear_model import LogisticRegressionCV

    return LogisticRegressionCV(Cs=[0.1, 0.3, 1, 3, 10], cv=3, max_iter=2000)


def _mlp(regression: bool, seed: int, max_iter: int = 300):
    """One hidden layer of 128 on standardised inputs (and, for regression, a standardised target:
    an MLP regressing raw years around 2010 diverges)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = MLPRegressor if regression else MLPClassifier
    head = make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(128,), alpha=1e-2, early_stopping=True,
                                               max_iter=max_iter, random_state=seed))
    return TransformedTargetRegressor(regressor=head, transformer=StandardScaler()) if regression else head


def fit_predict(make, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Fit a fresh model; predictions for ``x_te`` (class probabilities in ``classes`` order: a fold may
    lack a rare class, whose column stays 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make().fit(x_tr, y_tr)
        if classes is None:
            return model.predict(x_te)
        proba = model.predict_proba(x_te)
    seen = model.classes_ if not hasattr(model, "steps") else model.steps[-1][1].classes_
    out = np.zeros((len(x_te), len(classes)))
    out[:, np.searchsorted(classes, seen)] = proba
    return out


def _inner_oof(make, x: np.ndarray, y: np.ndarray, groups: np.ndarray, classes, seed: int) -> np.ndarray:
    """Out-of-fold predictions inside a training set (what the stacker learns from)."""
    folds = month_folds(groups, seed + 101, k=3)
    out = np.zeros((len(y),) if classes is None else (len(y), len(classes)))
    for f in range(3):
        out[folds == f] = fit_predict(make, x[folds != f], y[folds != f], x[folds == f], classes)
    return out


def run_task(x_img: np.ndarray, x_txt: np.ndarray, y: np.ndarray, groups: np.ndarray, *, regression: bool,
             repeats: int) -> dict[str, np.ndarray]:
    """Out-of-fold predictions per model and repeat: {model: (repeats, n[, classes])}."""
    make = _ridge if regression else _logistic
    both = np.hstack([x_img, x_txt])
    classes = None if regression else np.unique(y)
    models = ("picture", "text", "early", "late", "stacked", "mlp")
    preds: dict[str, list[np.ndarray]] = {m: [] for m in models}
    for r in range(repeats):
        folds = month_folds(groups, seed=r)
        rep = {m: np.zeros((len(y),) if regression else (len(y), len(classes))) for m in models}
        for f in range(FOLDS):
            tr, te = folds != f, folds == f
            for name, x in (("picture", x_img), ("text", x_txt)):
                rep[name][te] = fit_predict(make, x[tr], y[tr], x[te], classes)
            rep["early"][te] = fit_predict(make, both[tr], y[tr], both[te], classes)
            rep["late"][te] = (rep["picture"][te] + rep["text"][te]) / 2
            inner = [_inner_oof(make, x[tr], y[tr], groups[tr], classes, r) for x in (x_img, x_txt)]
            stack_tr = np.column_stack([i.reshape(len(i), -1) for i in inner])
            stack_te = np.column_stack([rep[n][te].reshape(te.sum(), -1) for n in ("picture", "text")])
            rep["stacked"][te] = fit_predict(make, stack_tr, y[tr], stack_te, classes)
            rep["mlp"][te] = fit_predict(lambda r=r: _mlp(regression, r), both[tr], y[tr], both[te], classes)
            print(f"  repeat {r + 1}/{repeats} fold {f + 1}/{FOLDS}", flush=True)
        for m in models:
            preds[m].append(rep[m])
    return {m: np.stack(v) for m, v in preds.items()}


# -- metrics -------------------------------------------------------------------------------------------
def regression_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Mean (sd) over repeats of RMSE, MAE and R²."""
    rmse = np.sqrt(((pred - y) ** 2).mean(axis=1))
    mae = np.abs(pred - y).mean(axis=1)
    r2 = 1 - ((pred - y) ** 2).sum(axis=1) / ((y - y.mean()) ** 2).sum()
    return {"rmse": _ms(rmse), "mae": _ms(mae), "r2": _ms(r2)}


def classification_scores(proba: np.ndarray, y: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    hits = classes[proba.argmax(axis=2)]
    acc = (hits == y).mean(axis=1)
    f1 = np.array([f1_score(y, h, average="macro", zero_division=0) for h in hits])
    return {"accuracy": _ms(acc), "macro_f1": _ms(f1)}


def _ms(x: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(x.mean()), 4), "sd": round(float(x.std()), 4)}


def paired_bootstrap(loss_a: np.ndarray, loss_b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """95 % interval of mean(loss_a − loss_b) over entries, by resampling entries."""
    diff = loss_a - loss_b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(N_BOOT, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"difference": round(float(diff.mean()), 4), "low": round(float(lo), 4), "high": round(float(hi), 4)}


def compare_fusion(losses: dict[str, np.ndarray], lower_is_better: bool) -> dict[str, dict]:
    """Each fusion model against the best single modality (per-entry loss averaged over repeats)."""
    best = min(("picture", "text"), key=lambda m: losses[m].mean() if lower_is_better else -losses[m].mean())
    out = {}
    for fusion in ("early", "late", "stacked", "mlp"):
        ci = paired_bootstrap(losses[fusion], losses[best])
        better = ci["high"] < 0 if lower_is_better else ci["low"] > 0
        worse = ci["low"] > 0 if lower_is_better else ci["high"] < 0
        out[fusion] = {"vs": best, **ci, "verdict": "gain" if better else "loss" if worse else "no clear difference"}
    return out


# -- scalability ---------------------------------------------------------------------------------------
def scaling(sizes: list[int], dim_img: int, dim_txt: int) -> list[dict]:
    """Fit/predict seconds of the ridge and MLP heads on synthetic data of the real width."""
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        x = rng.normal(size=(n, dim_img + dim_txt)).astype(np.float32)
        y = x[:, :16].sum(axis=1) + rng.normal(scale=0.5, size=n)
        row = {"n": n}
        for name, model in (("ridge", _ridge()), ("mlp", _mlp(True, 0, max_iter=20))):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(x, y)
            t1 = time.perf_counter()
            model.predict(x[:1000])
            row[f"{name}_fit_s"] = round(t1 - t0, 3)
            row[f"{name}_predict_1k_ms"] = round((time.perf_counter() - t1) * 1000, 2)
        rows.append(row)
        print(row, flush=True)
    return rows


def index_tradeoff(n: int, dim: int, queries: int = 200) -> dict:
    """Recall@10 against exact search and query time, exact vs LanceDB IVF_PQ at several nprobes."""
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(200, dim))
    x = (centres[rng.integers(0, 200, n)] + rng.normal(scale=0.6, size=(n, dim))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(n, queries, replace=False)] + rng.normal(scale=0.05, size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t0 = time.perf_counter()
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    exact_ms = (time.perf_counter() - t0) / queries * 1000
    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        table = db.create_table("v", data=pa.table({"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(x.reshape(-1)), dim)}))
        t0 = time.perf_counter()
        table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=int(n ** 0.5),
                                                  num_sub_vectors=dim // 8))
        build_s = time.perf_counter() - t0
        points = []
        for nprobes in (1, 5, 10, 20, 50):
            for refine in (None, 10):
                found, times = [], []
                for v in q:
                    t0 = time.perf_counter()
                    search = table.search(v).metric("cosine").nprobes(nprobes).limit(10).select(["id", "_distance"])
                    if refine:
                        search = search.refine_factor(refine)
                    found.append(search.to_arrow().column("id").to_pylist())
                    times.append(time.perf_counter() - t0)
                recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth.tolist())]))
                points.append({"nprobes": nprobes, "refine_factor": refine, "recall_at_10": round(recall, 3),
                               "p50_ms": round(float(np.median(times)) * 1000, 2)})
                print(points[-1], flush=True)
    return {"n": n, "dim": dim, "exact_numpy_ms_per_query": round(exact_ms, 2), "ivf_pq_build_s": round(build_s, 1),
            "points": points}


# -- main ----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", default="1000,10000,100000")
    ap.add_argument("--index-n", type=int, default=100_000)
    args = ap.parse_args()
    lake = LakeLayout.at(args.lake).root
    started = time.perf_counter()
    frame, img, txt = load(lake)
    groups = frame.month.to_numpy()
    out: dict = {"lake": lake_label(lake), "entries_with_picture": len(frame), "repeats": args.repeats,
                 "folds": FOLDS, "bootstrap": N_BOOT}

    y = frame.year.to_numpy()
    preds = run_task(img, txt, y, groups, regression=True, repeats=args.repeats)
    baseline = np.zeros_like(preds["text"])
    for r in range(args.repeats):  # the training folds' mean year, per fold
        folds = month_folds(groups, seed=r)
        for f in range(FOLDS):
            baseline[r, folds == f] = y[folds != f].mean()
    year = {m: regression_scores(p, y) for m, p in {"mean year (baseline)": baseline, **preds}.items()}
    losses = {m: np.abs(p - y).mean(axis=0) for m, p in preds.items()}
    out["year"] = {"n": len(y), "scores": year, "fusion_vs_best_single_mae": compare_fusion(losses, True)}
    print(out["year"], flush=True)

    labels = pd.concat([pd.read_csv(p, dtype=str) for p in LABELS]).drop_duplicates("date")
    lab = frame.reset_index().merge(labels, on="date")
    keep = lab.groupby("category").date.transform("size") >= FOLDS  # classes every fold can see
    lab = lab[keep]
    idx = lab["index"].to_numpy()
    yc = lab.category.to_numpy()
    classes = np.unique(yc)
    cpreds = run_task(img[idx], txt[idx], yc, groups[idx], regression=False, repeats=args.repeats)
    majority = pd.Series(yc).value_counts().iloc[0] / len(yc)
    cat = {m: classification_scores(p, yc, classes) for m, p in cpreds.items()}
    correct = {m: (classes[p.argmax(axis=2)] == yc).mean(axis=0) for m, p in cpreds.items()}
    out["category"] = {"n": len(yc), "classes": len(classes), "chance": round(1 / len(classes), 4),
                       "majority": round(float(majority), 4), "scores": cat,
                       "fusion_vs_best_single_accuracy": compare_fusion(correct, False)}
    print(out["category"], flush=True)
    out["scaling"] = scaling([int(s) for s in args.scale.split(",")], img.shape[1], txt.shape[1])
    out["index"] = index_tradeoff(args.index_n, img.shape[1])
    out["seconds"] = round(time.perf_counter() - started, 1)
    print("saved", save("multimodal", out))


if __name__ == "__main__":
    main()
