"""How the archive's text vectors are computed, and what it does to search and categories.

The offline encoder quantises MiniLM's linear layers to int8 *dynamically*: each layer's input is
scaled by the largest value in the whole batch tensor, padding included. So one text's vector depends
on which texts share its forward pass. The build encodes texts 64 at a time, sorted by length; a
search query is encoded alone. Variants, each over every entry of the lake (``title. explanation``,
the lake's token limit):

* **stored**: the lake's own ``text`` vectors (the build's batches);
* **int8, batches of 64**: re-encoded as the build does, in one call (sentence-transformers sorts by
  length): the same method as *stored*, other batch-mates at the edges;
* **int8, one text per pass**: each text alone, exactly as a query is encoded (no batch-mates, no
  padding): one vector per text whatever else is encoded;
* **fp32, batches of 64** (queries in fp32 too): no quantisation.

Reported per variant: texts/s, how far one text's vector moves between two batch compositions (mean
and minimum cosine), dense and hybrid mean P@10 on both judged query sets (hybrid = RRF with the lake's
keyword weight; the tuning set may choose, the held-out set never does; unjudged results count as not
relevant, so the mean count of such *unjudged* entries in the top 10 is given, and P@10 over judged
entries only — the *condensed* list, unjudged ones skipped — which does not favour the vectors the
pools were made with), and zero-shot text top-1 on both label sets with class vectors made as the build makes
them (the taxonomy's prompts, encoded like the variant's queries, adapted to the variant's vectors).

Usage: python bench/text_vectors.py [--lake DIR] [--cache FILE.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import encoder_from_manifest, l2_normalise  # noqa: E402
from bench.common import labelled_rows, lake_label, save  # noqa: E402
from bench.search_quality import SETS, condensed_p_at_10, hybrid_order, judged_pool, load_set  # noqa: E402
from lake import search  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from lake.search import SearchEngine  # noqa: E402
from pipeline.embed import text_input  # noqa: E402



def encode(encoder, texts: list[str], one_per_pass: bool) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    if one_per_pass:
        vectors = np.concatenate([encoder._encode_queries([t]) for t in texts])
    else:
        vectors = encoder.encode_text(texts, batch_size=64, progress=True)
    return l2_normalise(vectors), time.perf_counter() - t0


def drift(encoder, texts: list[str], one_per_pass: bool) -> dict[str, float]:
    """Cosine between a text's vector encoded among 63 random others and among 63 different ones."""
    rng = np.random.default_rng(0)
    probe = texts[:64:4]
    a = encode(encoder, probe + rng.choice(texts, 48).tolist(), one_per_pass)[0][:len(probe)]
    b = encode(encoder, probe + rng.choice(texts, 48).tolist(), one_per_pass)[0][:len(probe)]
    cos = (a * b).sum(axis=1)
    return {"mean_cos": round(float(cos.mean()), 5), "min_cos": round(float(cos.min()), 5)}


def archive_texts(reader: LakeReader) -> tuple[list[str], list[str], np.ndarray]:
    """Every entry's date and ``title. explanation`` (as the build encodes it), in date order, and its
    stored ``text`` vector (unit length), row for row."""
    df = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries ORDER BY date")
    dates = df.date.tolist()
    texts = [text_input(t or "", x or "") for t, x in zip(df.title, df.explanation)]
    stored_dates, stored = reader.vectors("text")
    row = {d: i for i, d in enumerate(stored_dates)}
    return dates, texts, l2_normalise(stored[[row[d] for d in dates]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="reuse/save the re-encoded vectors here (.npz)")
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    engine = SearchEngine(reader, encoder_from_manifest)
    spec = reader.manifest["encoder"]
    dates, texts, stored = archive_texts(reader)
    variants: dict[str, dict] = {"stored": {"vectors": stored, "queries": engine.encoder}}
    cached = dict(np.load(args.cache)) if args.cache and args.cache.is_file() else {}
    from atlas.encoders.offline import OfflineEncoder

    fp32 = OfflineEncoder(quantize="fp32", text_max_tokens=int(spec.get("text_max_tokens") or 128))
    for name, encoder, single in (("int8, batches of 64", engine.encoder, False),
                                  ("int8, one text per pass", engine.encoder, True),
                                  ("fp32, batches of 64", fp32, False)):
        key = name.replace(" ", "_").replace(",", "")
        if key in cached:
            vectors, seconds = cached[key], float(cached[key + "_s"])
        else:
            vectors, seconds = encode(encoder, texts, single)
            cached[key], cached[key + "_s"] = vectors, np.float64(seconds)
            if args.cache:
                np.savez(args.cache, **cached)
        variants[name] = {"vectors": vectors, "queries": encoder, "texts_per_s": round(len(texts) / seconds, 1),
                          "batch_drift": drift(encoder, texts, single)}
    from pipeline import taxonomy
    from pipeline.classify import OFFLINE_TEXT_TEMPLATES, adapt, class_vectors

    tax = taxonomy.load(None)
    labels = labelled_rows({d: i for i, d in enumerate(dates)})
    result = {"lake": lake_label(reader.layout.root), "entries": len(dates), "encoder": spec.get("name"),
              "quantize": spec.get("quantize"), "text_max_tokens": spec.get("text_max_tokens"),
              "keyword_weight": search.KEYWORD_WEIGHT, "variants": {}}
    date_arr = np.array(dates)
    sets = {name: load_set(*files) for name, files in SETS.items()}
    # per query, once: its judged pool and its keyword list (neither depends on the vectors scored)
    pools, keywords = {}, {}
    for queries, judged in sets.values():
        for q in queries:
            pools[q] = judged_pool(judged, q)
            keywords[q] = [h["date"] for h in engine._keyword(q, None, 50)]
    for name, v in variants.items():
        out = {k: v[k] for k in ("texts_per_s", "batch_drift") if k in v}
        for set_name, (queries, judged) in sets.items():
            p: dict[str, list[float]] = {f"{m}{k}": [] for m in ("dense", "hybrid") for k in ("", "_condensed", "_unjudged")}
            for q in queries:
                relevant, pool = set(judged[q]), pools[q]
                dense = date_arr[np.argsort(-(v["vectors"] @ v["queries"]._encode_queries([q])[0]))[:100]].tolist()
                for mode, ranking in (("dense", dense), ("hybrid", hybrid_order(dense[:50], keywords[q]))):
                    p[mode].append(sum(d in relevant for d in ranking[:10]) / 10)
                    p[f"{mode}_condensed"].append(condensed_p_at_10(ranking, pool, relevant))
                    p[f"{mode}_unjudged"].append(sum(d not in pool for d in ranking[:10]))
            for k, values in p.items():
                out[f"{k}_{set_name}"] = round(float(np.mean(values)), 3)
        # the build's class vectors, made the same way for each variant: prompts (through the offline build's
        # templates) adapted to its vectors
        classes = adapt(class_vectors(v["queries"], tax, OFFLINE_TEXT_TEMPLATES), v["vectors"])
        for label_set, (rows, truth) in labels.items():
            pred = np.array(tax.names)[(v["vectors"][rows] @ classes.T).argmax(axis=1)]
            out[f"zero_shot_top1_{label_set}"] = round(float(np.mean(pred == truth)), 3)
        result["variants"][name] = out
        print(name, json.dumps(out), flush=True)
    save("text_vectors", result)


if __name__ == "__main__":
    main()
