"""Text categories: the dense zero-shot against word classifiers self-trained on its confident guesses.

Every variant is computed in this run from the lake's stored text vectors and the entries' own words, with
no hand label; the labels are read only to score. The variants were chosen between on the tuning labels
(``bench/data/labelled_categories.csv``); ``labelled_pictures.csv`` is the set never tuned on (its labels
say what the *picture* shows, so text can only approach them).

* plain prompts — the taxonomy's prompt vectors, nearest to each text;
* adapted prompts — :func:`pipeline.classify.adapt` (the text categories before this change);
* self-trained — :func:`pipeline.text_classifier.fit` at the build's settings (words, share 0.6, C 1,
  the prompts through the build's templates), and variants: other pseudo-label shares, word pairs
  (bigrams), a second round on its own guesses, and the prompts put through other templates
  (:data:`TEMPLATE_SETS`, each set's vectors averaged per category).

*By collection size*: the same on random samples of the archive (8 per size), each fitted on its own
texts, scored on the labelled entries that fall in them: where the build's default ``--word-classifier-min``
comes from. Fit times are medians of 3 fits on 2 threads (TF-IDF + logistic regression on every entry); *classify
all* = a later build's classifier reading every entry's words anew (it remembers the texts it has
classified, so a daily build reads only the new ones).

Usage: python bench/text_categories.py [--lake DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import labelled_rows, lake_label, median, save  # noqa: E402
from atlas import environment  # noqa: E402
from lake.reader import LakeReader  # noqa: E402


#: Prompt templates tried for the text categories (the build's are :func:`pipeline.classify.text_templates`;
#: the prompts as written, ``{}``, were its rule until 2026-12-08).
TEMPLATE_SETS = (("{}",), ("{}", "An astronomy picture of {}."), ("Astronomy Picture of the Day: {}.",),
                 ("{}", "This image shows {}.", "The picture features {}."),
                 ("{}.", "A picture of {}", "{} seen through a telescope"))


def _through(templates: tuple[str, ...]) -> str:
    return " + ".join(f"“{t}”" for t in templates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    args = ap.parse_args()

    from atlas.encoders import encoder_from_manifest
    from atlas.encoders.align import class_probabilities
    from pipeline import taxonomy, text_classifier
    from pipeline.classify import adapt, class_vectors, logit_scale, text_templates
    from pipeline.embed import text_input

    reader = LakeReader.open(args.lake or environment.lake_dir())
    encoder = encoder_from_manifest(reader.manifest["encoder"])
    tax = taxonomy.load(None)  # the labels use the default taxonomy
    names = np.array(tax.names)
    dates, vecs = reader.vectors("text")
    ent = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries").set_index("date")
    words = [text_input(ent.title[d], ent.explanation[d]) for d in dates]
    pos = {d: i for i, d in enumerate(dates)}
    sets = labelled_rows(pos)

    def scores(probs: np.ndarray) -> dict[str, float]:
        top = names[np.asarray(probs).argmax(axis=1)]
        return {name: round(float(np.mean(top[rows] == truth)), 3) for name, (rows, truth) in sets.items()}

    scale = logit_scale(encoder)
    prompts = class_vectors(encoder, tax)
    plain = class_probabilities(vecs, prompts, scale)
    zero = class_probabilities(vecs, adapt(prompts, vecs), scale)
    rows: dict[str, dict] = {"plain prompts": scores(plain), "adapted prompts (before)": scores(zero)}

    def self_trained(label: str, inputs: np.ndarray, *, share: float = text_classifier.SHARE,
                     ngrams: tuple[int, int] = (1, 1)) -> np.ndarray:
        times, model = [], None
        for _ in range(3):
            t0 = time.perf_counter()
            model, probs = text_classifier.fit(words, inputs, names=list(names), key="bench", share=share, ngrams=ngrams)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert np.allclose(model.probabilities(words), probs, atol=1e-5)  # a later build reads texts alike
        apply_s = time.perf_counter() - t0
        rows[label] = {**scores(probs), "fit_s": round(median(times), 2), "classify_all_s": round(apply_s, 2),
                       "words": len(model.terms), "pseudo_labels": len(text_classifier.pseudo_labels(inputs, share=share)[0])}
        print(label, rows[label], flush=True)
        return probs

    build_templates = text_templates(encoder)
    build_prompts = class_vectors(encoder, tax, build_templates)
    build_zero = class_probabilities(vecs, adapt(build_prompts, vecs), scale)
    built = self_trained(f"self-trained (build: words, share 0.6, prompts through {_through(build_templates)})",
                         build_zero)
    for share in (0.2, 0.4, 0.8, 1.0):
        self_trained(f"self-trained, share {share}", build_zero, share=share)
    self_trained("self-trained, words and word pairs", build_zero, ngrams=(1, 2))
    self_trained("self-trained, second round on its own guesses", built)
    # prompt templates: each category's prompts through each template, all averaged (as CLIP prompts are)
    for templates in TEMPLATE_SETS:
        if templates != build_templates:
            templated = class_vectors(encoder, tax, templates)
            self_trained(f"self-trained, prompts through {_through(templates)}",
                         class_probabilities(vecs, adapt(templated, vecs), scale))

    by_size = collection_sizes(words, vecs, build_prompts, scale, names, sets)
    stored = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, category FROM categories WHERE source = 'text'")
    lake_cat = dict(zip(stored.date, stored.category))
    lake_scores = {name: round(float(np.mean([lake_cat.get(dates[r]) == t for r, t in zip(rows_, truth)])), 3)
                   for name, (rows_, truth) in sets.items()}
    result = {"lake": lake_label(reader.layout.root), "encoder": reader.manifest["encoder"].get("name"),
              "labelled": {name: len(r) for name, (r, _) in sets.items()}, "chance": round(1 / len(names), 3),
              "variants": rows, "by_collection_size": by_size, "lake_text_categories": lake_scores,
              "lake_rule": reader.manifest.get("taxonomy", {}).get("text_categories")}
    path = save("text_categories", result)
    print(pd.DataFrame(rows).T.to_string())
    print(f"lake's stored text categories: {lake_scores}\nsaved {path}")


def collection_sizes(words: list[str], vecs: np.ndarray, prompts: np.ndarray, scale: float, names: np.ndarray,
                     sets: dict, *, sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000), draws: int = 8) -> dict:
    """Smaller collections: ``draws`` random samples of each size, the zero-shot adapted and the classifier
    fitted on each sample alone, scored on the labelled entries in it (top-1, pooled over the draws)."""
    from atlas.encoders.align import class_probabilities
    from pipeline import text_classifier
    from pipeline.classify import adapt

    rng = np.random.default_rng(1)
    label = {int(r): (name, t) for name, (rows, truth) in sets.items() for r, t in zip(rows, truth)}
    out = {}
    for size in sizes:
        hits = {(rule, name): [] for rule in ("dense", "words") for name in sets}
        for _ in range(draws):
            sample = np.sort(rng.choice(len(words), size, replace=False))
            zero = class_probabilities(vecs[sample], adapt(prompts, vecs[sample]), scale)
            _, probs = text_classifier.fit([words[i] for i in sample], zero, names=list(names), key="bench",
                                           min_texts=1)
            for j, i in enumerate(sample):
                if int(i) in label:
                    name, truth = label[int(i)]
                    hits[("dense", name)].append(names[zero[j].argmax()] == truth)
                    hits[("words", name)].append(names[probs[j].argmax()] == truth)
        out[size] = {f"{rule} {name}": round(float(np.mean(v)), 3) for (rule, name), v in hits.items()}
        out[size]["scored"] = {name: len(hits[("dense", name)]) for name in sets}
        print(size, out[size], flush=True)
    return out


if __name__ == "__main__":
    main()
