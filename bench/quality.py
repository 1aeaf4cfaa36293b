"""Quality of a built lake against the hand labels in bench/data.

* zero-shot top-1 / top-3 accuracy of the lake's text categories on ``labelled_categories.csv`` (the
  set the class-vector adaptation and the word classifier's settings were chosen on) and on
  ``labelled_pictures.csv`` (never tuned on), with the prompt vectors alone (plain, and adapted: the
  rule before the self-trained word classifier) as baselines of the same run;
* the lake's picture categories on labelled pictures. In a default build those pictures were in the
  alignment's training (leave-one-out), so this is not a held-out score: bench/picture_meaning.py
  gives the held-out one;
* visual neighbour agreement: for every entry with an image, the share of its 10 nearest image
  neighbours whose (text-derived) category equals its own, against the chance rate Σ p_c² of two random
  images sharing a category.

Usage: python bench/quality.py [--lake DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import lake_label, save  # noqa: E402
from atlas import environment  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from pipeline.neighbors import knn_graph  # noqa: E402

LABELS = Path(__file__).resolve().parent / "data" / "labelled_categories.csv"
HELD_OUT_LABELS = Path(__file__).resolve().parent / "data" / "labelled_pictures.csv"


def zero_shot_accuracy(reader: LakeReader, labels: pd.DataFrame, source: str) -> dict[str, float] | None:
    cats = reader.query(
        "SELECT strftime(date, '%Y-%m-%d') AS date, category, top3_categories FROM categories WHERE source = ?",
        [source],
    )
    if cats.empty:
        return None
    merged = labels.merge(cats, on="date", how="inner", suffixes=("_true", ""))
    top1 = float((merged.category == merged.category_true).mean())
    top3 = float(np.mean([t in list(c) for t, c in zip(merged.category_true, merged.top3_categories)]))
    return {"n": len(merged), "top1": round(top1, 3), "top3": round(top3, 3)}


def dense_prompt_top1(reader: LakeReader, labels: pd.DataFrame, *, adapted: bool) -> float:
    """Baselines from the same run: text categories from the prompt vectors alone (nearest class), plain
    or adapted to the collection (the text categories before the self-trained word classifier)."""
    from atlas.encoders import encoder_from_manifest
    from pipeline import taxonomy
    from pipeline.classify import adapt, class_vectors

    tax = taxonomy.load(None)  # the labels use the default taxonomy
    dates, vecs = reader.vectors("text")
    classes = class_vectors(encoder_from_manifest(reader.manifest["encoder"]), tax)
    if adapted:
        classes = adapt(classes, vecs)
    pos = {d: i for i, d in enumerate(dates)}
    known = labels[labels.date.isin(pos)]
    pred = np.array(tax.names)[np.argmax(vecs[[pos[d] for d in known.date]] @ classes.T, axis=1)]
    return round(float(np.mean(pred == known.category.to_numpy())), 3)


def neighbour_agreement(dates: list[str], vectors: np.ndarray, category: dict[str, str], k: int = 10) -> dict[str, float]:
    labels = np.array([category.get(d, "?") for d in dates])
    graph = knn_graph(vectors, k)
    idx, _ = graph.without_self(k)
    agree = float((labels[idx] == labels[:, None]).mean())
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    chance = float((p**2).sum())
    return {"n": len(dates), "k": k, "agreement": round(agree, 3), "chance": round(chance, 3),
            "lift": round(agree / chance, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    labels = pd.read_csv(LABELS, dtype=str)
    result = {"lake": lake_label(reader.layout.root), "encoder": reader.manifest["encoder"].get("name"),
              "labelled_sample": len(labels)}
    held_out = pd.read_csv(HELD_OUT_LABELS, dtype=str)
    result["zero_shot_text"] = zero_shot_accuracy(reader, labels, "text")
    result["zero_shot_text_never_tuned"] = zero_shot_accuracy(reader, held_out, "text")
    for key, adapted in (("zero_shot_text_plain_prompts", False), ("zero_shot_text_adapted_prompts", True)):
        result[key] = {"tuning": dense_prompt_top1(reader, labels, adapted=adapted),
                       "never_tuned": dense_prompt_top1(reader, held_out, adapted=adapted)}
    result["text_categories_rule"] = reader.manifest.get("taxonomy", {}).get("text_categories", {}).get("method")
    result["zero_shot_image_in_lake"] = zero_shot_accuracy(reader, pd.concat([labels, held_out]), "image")
    text_cats = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, category FROM categories WHERE source='text'")
    category = dict(zip(text_cats.date, text_cats.category))
    dates, vecs = reader.vectors("image")
    result["visual_neighbours_vs_text_categories"] = neighbour_agreement(dates, vecs, category)
    path = save(f"quality_{result['encoder']}", result)
    for key, val in result.items():
        print(f"{key}: {val}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
