"""The self-trained word classifier behind the text categories (pipeline.text_classifier)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import text_classifier
from pipeline.text_classifier import TextClassifier, fit, pseudo_labels, refit_reason

TOPICS = {
    "Comet": ["comet", "tail", "coma", "nucleus", "ion", "dust", "perihelion"],
    "Aurora": ["aurora", "auroral", "curtains", "geomagnetic", "storm", "oval", "magnetosphere"],
    "Galaxy": ["galaxy", "spiral", "arms", "bulge", "disk", "halo", "elliptical"],
}
FILLER = ["the", "image", "shows", "night", "sky", "bright", "light", "seen", "from", "here"]


def corpus(n: int = 300, seed: int = 0, wrong: float = 0.3):
    """Texts on three topics, each with its topic's words; a zero-shot that is confidently right on most
    texts and, on a share ``wrong`` of them, guesses another topic by a small margin (as a dense model
    reading only the first words of a long text does)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    truth = rng.integers(0, len(names), n)
    texts = []
    for t in truth:
        words = list(rng.choice(TOPICS[names[t]], 5)) + list(rng.choice(FILLER, 8))
        rng.shuffle(words)
        texts.append(" ".join(words))
    probs = np.full((n, len(names)), 0.05)
    misled = rng.random(n) < wrong
    guess = np.where(misled, (truth + 1) % len(names), truth)
    probs[np.arange(n), guess] = np.where(misled, 0.5, 0.9)
    probs[misled, truth[misled]] = 0.45  # the right topic a close second
    return texts, probs / probs.sum(axis=1, keepdims=True), truth, names


def test_pseudo_labels_keep_each_class_s_widest_margins():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8], [0.45, 0.55], [0.7, 0.3]])
    rows, labels = pseudo_labels(probs, share=0.5)
    # class 0 has four members (margins 0.8, 0.2, 0.1, 0.4): the two widest; class 1 two: at least two
    assert list(rows) == [0, 3, 4, 5] and list(labels) == [0, 1, 1, 0]
    assert pseudo_labels(probs, share=0.5)[0].tolist() == rows.tolist()  # deterministic


def test_self_training_corrects_the_zero_shot_where_it_was_unsure():
    texts, probs, truth, names = corpus()
    before = float(np.mean(probs.argmax(axis=1) == truth))
    model, after = fit(texts, probs, names=names, key="k", min_texts=50)
    assert after.shape == probs.shape and np.allclose(after.sum(axis=1), 1, atol=1e-5)
    assert before < 0.75 and float(np.mean(after.argmax(axis=1) == truth)) > 0.95
    # unseen texts are classified by their words
    unseen = model.probabilities(["a faint coma and a long ion tail", "green auroral curtains in a storm"])
    assert [names[i] for i in unseen.argmax(axis=1)] == ["Comet", "Aurora"]


def test_saved_classifier_loads_without_pickle_and_classifies_alike(tmp_path):
    texts, probs, _, names = corpus(seed=1)
    model, probs = fit(texts, probs, names=names + ["Never guessed"], key="taxonomy:encoder", min_texts=50)
    model.save(tmp_path / "m.npz")
    loaded = TextClassifier.load(tmp_path / "m.npz")  # np.load refuses object arrays: none are stored
    assert loaded.terms.dtype.kind == "U" and loaded.key == "taxonomy:encoder" and loaded.fitted_on == len(texts)
    again = loaded.probabilities(texts)
    assert np.allclose(again, probs, atol=1e-6)  # read anew: as at the fit
    assert again.shape[1] == 4 and not again[:, 3].any()  # a class no text was guessed as gets 0
    remembered, new, same = loaded.classify(texts)
    assert new == 0 and np.array_equal(remembered, probs)
    assert np.array_equal(same.known_sha, loaded.known_sha) and np.array_equal(same.known_probs, probs)


def test_word_features_are_sklearns_tfidf():
    """The classifier computes TF-IDF of new texts itself (no scikit-learn import in a daily build): the
    same rows as sklearn's transform with the fitted vocabulary, including words it never saw."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, probs, _, names = corpus(seed=2)
    model, _ = fit(texts, probs, names=names, key="k", min_texts=50)
    fresh = ["Comet's TAIL, tail and tail: a coma!", "unknown words only", "", "aurora über storm storm"]
    vec = TfidfVectorizer(vocabulary={str(t): i for i, t in enumerate(model.terms)}, **text_classifier._VECTORISER)
    vec.idf_ = model.idf
    assert np.allclose(model.features(fresh).toarray(), vec.transform(fresh).toarray(), atol=1e-6)
    assert not model.features(["unknown words only"]).nnz


def test_known_texts_are_not_read_again_and_changed_ones_are():
    texts, probs, _, names = corpus(seed=3)
    model, first = fit(texts, probs, names=names, key="k", min_texts=50)
    changed = list(texts)
    changed[5] = "aurora aurora curtains storm"
    out, new, now = model.classify(changed + ["comet tail coma"])
    assert new == 2 and np.array_equal(out[:5], first[:5]) and names[out[5].argmax()] == "Aurora"
    assert names[out[-1].argmax()] == "Comet"
    later = model.remembering(changed, out[:-1])
    assert later.classify(changed)[1] == 0 and len(later.known_sha) == len(changed)
    # what classify remembers is what it returned, for exactly the texts it was given
    assert len(now.known_sha) == len(changed) + 1 and np.array_equal(now.known_probs, out)
    assert now.classify(changed + ["comet tail coma"])[1] == 0


def test_too_little_text_leaves_the_zero_shot_alone():
    texts, probs, _, names = corpus(n=300)
    assert text_classifier.MIN_TEXTS > 300 and fit(texts, probs, names=names, key="k") is None
    assert fit(texts[:49], probs[:49], names=names, key="k", min_texts=50) is None
    # every word in fewer than three texts: no vocabulary
    words = [f"word{i} other{i}" for i in range(60)]
    assert fit(words, np.tile([[0.6, 0.4]], (60, 1)), names=["a", "b"], key="k", min_texts=50) is None


def test_two_classes_are_a_binary_fit_with_both_columns():
    texts, probs, truth, names = corpus()
    two = truth < 2
    texts2 = [t for t, keep in zip(texts, two) if keep]
    probs2 = probs[two][:, :2] / probs[two][:, :2].sum(axis=1, keepdims=True)
    model, out = fit(texts2, probs2, names=names[:2], key="k", min_texts=50)
    assert model.coef.shape[0] == 2 and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert float(np.mean(out.argmax(axis=1) == truth[two])) > 0.95
    assert np.allclose(model.probabilities(texts2), out, atol=1e-6)


def test_one_guessed_class_takes_every_text():
    texts, _, _, names = corpus()
    probs = np.tile([[0.1, 0.8, 0.1]], (len(texts), 1))
    model, out = fit(texts, probs, names=names, key="k", min_texts=50)
    assert (out.argmax(axis=1) == 1).all() and (model.probabilities(texts).argmax(axis=1) == 1).all()


@pytest.mark.parametrize(("texts", "key", "refit", "reason"), [
    (1000, "k", False, None),
    (1049, "k", False, None),  # fewer than 5 % added since the fit
    (1050, "k", False, "1050 texts against 1000 at its fit"),
    (990, "k", False, "990 texts against 1000 at its fit"),
    (1000, "other", False, "the taxonomy or the text encoder changed"),
    (1000, "k", True, "--refit"),
])
def test_the_published_classifier_is_kept_until_a_refit_is_due(texts, key, refit, reason):
    kept = TextClassifier(names=["a"], terms=np.array(["w"]), idf=np.ones(1), coef=np.zeros((1, 1)),
                          intercept=np.zeros(1), classes=np.array([0]), key="k", fitted_on=1000)
    assert refit_reason(kept, texts=texts, key=key, refit=refit) == reason
    assert refit_reason(None, texts=texts, key=key, refit=refit) == ("--refit" if refit else "no published classifier")
