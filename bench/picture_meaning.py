"""Offline picture meaning, measured honestly: pretrained EfficientNet-Lite0 features vs the hand-made
pixel descriptors, and a text–picture space learned from the archive's own picture–caption pairs.

* **Neighbour agreement**: for each hand-labelled picture, the share of its 10 nearest labelled
  pictures (cosine) with the same hand label; chance = Σ p_c².
* **Learned space** (ridge regression from picture features into the MiniLM text space), scored only on
  pairs it never saw: 5 folds by contiguous date blocks (APOD re-uses pictures of one event on nearby
  days; blocks keep those on one side). Per fold: caption → picture R@10 among the fold's pictures
  (chance = 10 / fold size), and zero-shot categories of the fold's labelled pictures against the
  taxonomy's prompt vectors, top-1 (majority class and chance as baselines).
* Three heads map a picture into the text space: ridge regression, "neighbour captions" (the mean
  caption vector of the picture's k nearest training pictures; what the build keeps) and a linear head
  trained with a contrastive loss (InfoNCE, locked text tower, LiT-style). Each head's setting (ridge
  strength, k, epochs) is chosen by inner cross-validation of caption → picture R@10 on the training
  folds only; the hand labels never choose anything (they are read once, to score).
* Zero-shot classes are the build's: the taxonomy's prompts adapted to the archive's texts
  (``pipeline.classify.adapt``, no labels).
* **The lake's own path**: ``pipeline.align.align`` over the lake's stored vectors with every labelled
  picture excluded from training (what ``--align-exclude`` does in a build), and the build's picture
  categories: the look-alikes' vote of their captions' text categories (the lake's self-trained word
  classifier, ``pipeline.text_classifier``) blended with a linear probe trained on those categories
  (``pipeline.picture_probe``; all settings by a label-free inner CV), with the vote alone (the rule
  before the probe), the probe alone, the vote of the captions' dense zero-shot classes and the aligned
  vector's nearest class as the same run's baselines. The per-feature vote rows above (5 outer folds,
  vote and vote + probe) use the dense zero-shot caption classes.

Needs a built lake for the caption vectors (``--lake``, default the repo's) and the bundled pictures.
Usage: python bench/picture_meaning.py [--lake DIR] [--features CACHE.npz]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import space, visual  # noqa: E402
from bench.common import lake_label, save  # noqa: E402
from lake.reader import LakeReader  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
IMAGES = Path(__file__).resolve().parent.parent / "data" / "apod" / "images"
ALPHAS = (10.0, 100.0, 1000.0, 3000.0, 10000.0, 30000.0)
NEIGHBOURS = (5, 10, 20, 40)
FOLDS = 5


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def labels() -> pd.DataFrame:
    """Hand labels of entries with a bundled picture (both labelled files; scoring only). ``never_tuned``
    marks the rows of ``labelled_pictures.csv`` not also in ``labelled_categories.csv``: the latter chose
    the text categories' settings, which the picture vote learns from, so scores on its rows are reported
    apart."""
    frames = [pd.read_csv(DATA / name) for name in ("labelled_pictures.csv", "labelled_categories.csv")
              if (DATA / name).is_file()]
    df = pd.concat(frames).drop_duplicates("date")
    tuning = DATA / "labelled_categories.csv"
    tuned = set(pd.read_csv(tuning).date) if tuning.is_file() else set()
    df = df.assign(never_tuned=[d not in tuned for d in df.date])
    return df[[(IMAGES / f"{d}.jpg").is_file() for d in df.date]].reset_index(drop=True)


def features(dates: list[str], cache: Path | None) -> dict[str, np.ndarray]:
    if cache and cache.is_file():
        z = np.load(cache)
        pos = {d: i for i, d in enumerate(z["dates"])}
        idx = [pos[d] for d in dates]
        return {"efficientnet": z["eff"][idx], "descriptors": z["desc"][idx]}
    from PIL import Image

    from atlas.encoders.efficientnet import EfficientNetFeatures

    model, eff, desc = EfficientNetFeatures(), [], []
    for i in range(0, len(dates), 64):
        ims = [Image.open(IMAGES / f"{d}.jpg").convert("RGB") for d in dates[i:i + 64]]
        eff.append(model.features(ims))
        desc += [visual.describe(im) for im in ims]
    out = {"efficientnet": np.concatenate(eff), "descriptors": np.stack(desc)}
    if cache:
        np.savez(cache, dates=np.array(dates), eff=out["efficientnet"], desc=out["descriptors"])
    return out


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(x - mu) / sd for x in (train, *others)]


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form ridge (with a bias column): the map from picture features to caption vectors."""
    xb = np.hstack([x, np.ones((len(x), 1), x.dtype)])
    reg = alpha * np.eye(xb.shape[1], dtype=np.float64)
    reg[-1, -1] = 0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def project(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return unit(np.hstack([x, np.ones((len(x), 1), x.dtype)]) @ w)


def recall_at(k: int, captions: np.ndarray, pictures: np.ndarray) -> float:
    sims = unit(captions) @ pictures.T
    own = np.diag(sims)
    return float(np.mean((sims > own[:, None]).sum(1) < k))


def blocks(n: int, folds: int) -> list[np.ndarray]:
    return [np.arange(n)[i * n // folds:(i + 1) * n // folds] for i in range(folds)]


def ridge_head(xt: np.ndarray, yt: np.ndarray, xh: np.ndarray, alpha: float) -> np.ndarray:
    xt, xh = standardise(xt, xh)
    return project(xh, ridge(xt, yt, alpha))


def neighbour_head(xt: np.ndarray, yt: np.ndarray, xh: np.ndarray, k: float) -> np.ndarray:
    """Mean caption of the k most similar training pictures (similarity-weighted)."""
    mu = xt.mean(0)
    sims = unit(xh - mu) @ unit(xt - mu).T
    nn = np.argpartition(-sims, int(k), axis=1)[:, :int(k)]
    w = np.maximum(np.take_along_axis(sims, nn, 1), 0)[..., None]
    return unit((yt[nn] * w).sum(1))


def infonce_head(xt: np.ndarray, yt: np.ndarray, xh: np.ndarray, epochs: float) -> np.ndarray:
    """A linear picture head trained contrastively against the locked text tower (LiT-style InfoNCE,
    symmetric loss, temperature 0.05, AdamW lr 1e-3, weight decay 0.01, batches of 512, fixed seed)."""
    import torch

    torch.manual_seed(0)
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    a = torch.tensor((xt - mu) / sd, dtype=torch.float32)
    b = torch.tensor(yt, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(a.shape[1], b.shape[1])
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3, weight_decay=0.01)
    for _ in range(int(epochs)):
        perm = torch.randperm(len(a), generator=gen)
        for i in range(0, len(a), 512):
            idx = perm[i:i + 512]
            logits = torch.nn.functional.normalize(lin(a[idx]), dim=1) @ b[idx].T / 0.05
            target = torch.arange(len(idx))
            loss = (torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return unit(lin(torch.tensor((xh - mu) / sd, dtype=torch.float32)).numpy().astype(np.float64))


HEADS = {"ridge": (ridge_head, ALPHAS), "neighbour captions": (neighbour_head, NEIGHBOURS),
         "InfoNCE linear": (infonce_head, (20,))}  # one setting, fixed before scoring: training is slow


def choose(head: str, x: np.ndarray, y: np.ndarray) -> float:
    """Inner 3-fold (date blocks) caption → picture R@10 on training pairs only."""
    fn, grid = HEADS[head]
    if len(grid) == 1:
        return grid[0]
    scores = {}
    for setting in grid:
        r = []
        for held in blocks(len(x), 3):
            keep = np.setdiff1d(np.arange(len(x)), held)
            r.append(recall_at(10, y[held], fn(x[keep], y[keep], x[held], setting)))
        scores[setting] = float(np.mean(r))
    return max(scores, key=scores.get)


def neighbour_agreement(vectors: np.ndarray, cats: np.ndarray, k: int = 10) -> float:
    v = unit(vectors - vectors.mean(0))
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, 1)[:, :k]
    return float(np.mean(cats[nn] == cats[:, None]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--features", type=Path, default=None, help="reuse/save picture features here (.npz)")
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    text_dates, text_vecs = reader.vectors("text")
    tpos = {d: i for i, d in enumerate(text_dates)}
    dates = sorted(p.stem for p in IMAGES.glob("*.jpg") if p.stem in tpos)
    captions = text_vecs[[tpos[d] for d in dates]].astype(np.float64)
    t0, cached = time.perf_counter(), bool(args.features and args.features.is_file())
    feats = {k: v.astype(np.float64) for k, v in features(dates, args.features).items()}
    feature_seconds = time.perf_counter() - t0
    # the stored picture vectors: the collection-fitted PCA-256 (half-whitened) the offline encoder uses;
    # it was chosen over raw/PCA-128/512/unwhitened by held-out caption → picture R@10 (labels unused)
    feats["efficientnet · PCA-256 (stored)"] = space.apply_space(
        feats["efficientnet"], space.fit_space(feats["efficientnet"], 256)).astype(np.float64)

    lab = labels()
    lab = lab[lab.date.isin(dates)]
    pos = {d: i for i, d in enumerate(dates)}
    lab_idx = np.array([pos[d] for d in lab.date])
    cats = lab.category.to_numpy()
    shares = lab.category.value_counts(normalize=True)
    chance_nn = float((shares ** 2).sum())

    from atlas.encoders import encoder_from_manifest
    from pipeline import taxonomy
    from pipeline.classify import adapt, class_vectors, logit_scale

    encoder = encoder_from_manifest(reader.manifest["encoder"])
    tax = taxonomy.load(None)
    # the build's class vectors: prompts adapted to all the archive's texts (no labels, no pictures)
    classes = unit(adapt(class_vectors(encoder, tax), text_vecs).astype(np.float64))
    prompt_classes = unit(class_vectors(encoder, tax).astype(np.float64))
    names = np.array(tax.names)

    result = {"lake": lake_label(reader.layout.root), "pictures": len(dates), "labelled_pictures": len(lab),
              "label_counts": lab.category.value_counts().to_dict(), "feature_seconds": round(feature_seconds, 1) if not (args.features and cached) else None,
              "neighbour_agreement": {"chance": round(chance_nn, 3)}, "aligned": {}, "vote": {}}
    for name, x in feats.items():
        result["neighbour_agreement"][name] = round(neighbour_agreement(x[lab_idx], cats), 3)
        for head in HEADS:
            if head == "InfoNCE linear" and name == "descriptors":
                continue
            result["aligned"][f"{name} · {head}"] = evaluate(head, x, captions, lab_idx, cats, classes, names)
        result["vote"][name] = evaluate_vote(x, captions, lab_idx, cats, classes, names, logit_scale(encoder))
    result["lake_alignment_holdout"] = lake_holdout(reader, lab, classes, prompt_classes, names, logit_scale(encoder))
    result["zero_shot_baselines"] = {"majority": round(float(shares.iloc[0]), 3),
                                     "majority_class": shares.index[0], "chance": round(1 / len(names), 3)}
    print(pd.Series(result).to_string())
    save("picture_meaning", result)


def lake_holdout(reader: LakeReader, lab: pd.DataFrame, classes: np.ndarray, prompt_classes: np.ndarray,
                 names: np.ndarray, scale: float) -> dict:
    """The build's own code path (``pipeline.align.align``) on the lake's stored vectors, with every
    labelled picture passed as ``--align-exclude``: the space never saw them. Scores their picture
    categories by the build's rule (the look-alikes' vote, settings chosen without labels) and, as the
    baseline of the same run, by the previous rule (the aligned vector's nearest class, adapted and
    plain prompts), and held-out caption → picture R@10 among them."""
    from atlas.encoders.align import choose_vote, class_probabilities
    from pipeline.align import align
    from pipeline.picture_probe import fit_probe
    from pipeline.embed import text_input
    from pipeline.text_classifier import TextClassifier

    text, image = reader.vectors("text"), reader.vectors("image")
    res = align(text=text, image=image, shared_space=False, exclude=set(lab.date))
    row = {d: i for i, d in enumerate(res.dates)}
    aligned = res.aligned[[row[d] for d in lab.date]].astype(np.float64)
    tpos = {d: i for i, d in enumerate(text[0])}
    captions = text[1][[tpos[d] for d in lab.date]]
    truth = lab.category.to_numpy()
    # the build's picture categories: the look-alikes' vote of their captions' text categories (the lake's
    # word classifier, self-trained without labels), its settings chosen by the label-free inner CV
    ent = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries").set_index("date")
    words = [text_input(ent.title[d], ent.explanation[d]) for d in res.head.dates]
    caption_probs = TextClassifier.load(reader.layout.text_classifier).probabilities(words)
    vote, vote_scores = choose_vote(res.head, caption_probs)
    t0 = time.perf_counter()
    probe, probe_report = fit_probe(res.head, caption_probs, names=list(names), vote=vote, space="bench")
    probe_s = time.perf_counter() - t0
    ipos = {d: i for i, d in enumerate(image[0])}
    query = image[1][[ipos[d] for d in lab.date]]
    blended = res.head.category_votes(query, caption_probs, vote=vote, probe=probe)
    votes = res.head.category_votes(query, caption_probs, vote=vote)
    linear = probe.probabilities(query) if probe is not None else votes
    # the previous rule, same run: the vote of the captions' dense zero-shot classes
    dense = class_probabilities(res.head.captions, classes, scale)
    dense_vote, _ = choose_vote(res.head, dense)
    dense_votes = res.head.category_votes(query, dense, vote=dense_vote)
    never = lab.never_tuned.to_numpy()
    hits = names[blended.argmax(1)] == truth
    return {"held_out_pictures": len(lab), "k": res.head.k, "pairs": res.report["pairs"],
            "zero_shot_top1": round(float(np.mean(hits)), 3),
            "never_tuned_pictures": int(never.sum()),
            "zero_shot_top1_never_tuned": round(float(np.mean(hits[never])), 3),
            "zero_shot_top1_tuning_labels": round(float(np.mean(hits[~never])), 3) if (~never).any() else None,
            "majority_never_tuned": round(float(pd.Series(truth[never]).value_counts(normalize=True).iloc[0]), 3),
            "zero_shot_top1_vote_alone": round(float(np.mean(names[votes.argmax(1)] == truth)), 3),
            "zero_shot_top1_probe_alone": round(float(np.mean(names[linear.argmax(1)] == truth)), 3),
            "probe": probe_report | {"fit_s": round(probe_s, 2)},
            "vote": {"k": vote.k, "tau": vote.tau, "inner_cv_caption_class_agreement": vote_scores},
            "zero_shot_top1_dense_caption_vote": round(float(np.mean(names[dense_votes.argmax(1)] == truth)), 3),
            "dense_caption_vote": {"k": dense_vote.k, "tau": dense_vote.tau},
            "zero_shot_top1_aligned_vector": round(float(np.mean(names[np.argmax(aligned @ classes.T, 1)] == truth)), 3),
            "zero_shot_top1_aligned_vector_plain_prompts": round(float(np.mean(names[np.argmax(aligned @ prompt_classes.T, 1)] == truth)), 3),
            "caption_to_picture_r10": round(recall_at(10, captions, aligned), 3), "r10_chance": round(10 / len(lab), 4)}


def evaluate(head: str, x: np.ndarray, captions: np.ndarray, lab_idx: np.ndarray, cats: np.ndarray,
             classes: np.ndarray, names: np.ndarray) -> dict:
    """Outer 5-fold scores of one head: caption → picture R@10 and zero-shot top-1 on held-out pairs."""
    fn = HEADS[head][0]
    recalls, hits, chosen, n_scored = [], 0, [], 0
    for held in blocks(len(x), FOLDS):
        keep = np.setdiff1d(np.arange(len(x)), held)
        setting = choose(head, x[keep], captions[keep])
        chosen.append(setting)
        aligned = fn(x[keep], captions[keep], x[held], setting)
        recalls.append((recall_at(10, captions[held], aligned), 10 / len(held)))
        in_fold = np.isin(lab_idx, held)
        if in_fold.any():
            where = {g: i for i, g in enumerate(held)}
            vecs = aligned[[where[g] for g in lab_idx[in_fold]]]
            pred = names[np.argmax(vecs @ classes.T, 1)]
            hits += int((pred == cats[in_fold]).sum())
            n_scored += int(in_fold.sum())
    return {"caption_to_picture_r10": round(float(np.mean([r for r, _ in recalls])), 3),
            "r10_chance": round(float(np.mean([c for _, c in recalls])), 4),
            "zero_shot_top1": round(hits / max(n_scored, 1), 3), "scored": n_scored, "settings": chosen}


def evaluate_vote(x: np.ndarray, captions: np.ndarray, lab_idx: np.ndarray, cats: np.ndarray, classes: np.ndarray,
                  names: np.ndarray, scale: float) -> dict:
    """Outer 5-fold zero-shot top-1 of the build's picture categories (the look-alikes' vote, and the vote
    blended with the linear probe), settings chosen per fold by ``choose_vote`` and ``fit_probe`` on the
    training folds (caption categories, no labels)."""
    from atlas.encoders.align import choose_vote, class_probabilities, make_head
    from pipeline.picture_probe import fit_probe

    hits, n_scored, chosen, blend_hits, blend_chosen = 0, 0, [], 0, []
    for held in blocks(len(x), FOLDS):
        in_fold = np.isin(lab_idx, held)
        if not in_fold.any():
            continue
        keep = np.setdiff1d(np.arange(len(x)), held)
        head = make_head(x[keep], captions[keep], 10)
        caption_probs = class_probabilities(head.captions, classes, scale)
        vote, _ = choose_vote(head, caption_probs)
        chosen.append(f"k={vote.k} tau={vote.tau}")
        probs = head.category_votes(x[lab_idx[in_fold]], caption_probs, vote=vote)
        hits += int((names[probs.argmax(1)] == cats[in_fold]).sum())
        probe, _ = fit_probe(head, caption_probs, names=list(names), vote=vote, space="bench")
        blend_chosen.append(f"C={probe.C} share={probe.share}" if probe else "none")
        probs = head.category_votes(x[lab_idx[in_fold]], caption_probs, vote=vote, probe=probe)
        blend_hits += int((names[probs.argmax(1)] == cats[in_fold]).sum())
        n_scored += int(in_fold.sum())
    return {"zero_shot_top1": round(hits / max(n_scored, 1), 3), "scored": n_scored, "settings": chosen,
            "with_probe": {"zero_shot_top1": round(blend_hits / max(n_scored, 1), 3), "settings": blend_chosen}}


if __name__ == "__main__":
    main()
