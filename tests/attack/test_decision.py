"""The attack's decision rule on hand-made embeddings: argmax, plurality with ties, tau, k > images, draws."""

import numpy as np
import pytest

from idia.attack import decision as aggregate


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_predict_is_argmax_of_cosine_per_template():
    # 2 templates x 3 candidates in 3-D; template 1 swaps candidates 0 and 2.
    text = _unit([[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]]])
    imgs = _unit([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    preds = aggregate.predict(imgs, text, chunk=1)
    assert preds.tolist() == [[0, 2], [2, 0]]
    assert preds.dtype == np.int32


def test_plurality_tie_counts_as_not_correct():
    # one draw, 4 images, 3 templates; true candidate = 7
    preds = np.array([[[7, 7, 1], [7, 2, 1], [3, 7, 7], [3, 2, 7]]])
    ok = aggregate.correct_templates(preds, 7)
    # template 0: 7 twice, 3 twice -> tie -> not correct; template 1: 7 twice, 2 twice -> tie;
    # template 2: 7 twice, 1 twice -> tie
    assert ok.tolist() == [[False, False, False]]
    preds[0, 3, 0] = 7  # template 0 now 7 x3 vs 3 x1
    assert aggregate.correct_templates(preds, 7).tolist() == [[True, False, False]]


def test_plurality_needs_the_true_candidate_on_top():
    preds = np.array([[[5], [5], [9]]])
    assert aggregate.correct_templates(preds, 9).tolist() == [[False]]
    assert aggregate.correct_templates(preds, 5).tolist() == [[True]]
    assert aggregate.correct_templates(preds, 4).tolist() == [[False]]  # never predicted


def test_tau_and_score():
    # 3 images x 4 templates, all correct on 2 templates only.
    preds = np.array([[0, 0, 1, 2]] * 3, dtype=np.int32)
    res = aggregate.attack_identity(preds, 0, "x", ks=[3], draws=2, seed=0, tau=2)
    assert res["correct_templates"].tolist() == [2, 2]
    assert res["predicted_member"].tolist() == [True, True]
    res3 = aggregate.attack_identity(preds, 0, "x", ks=[3], draws=2, seed=0, tau=3)
    assert res3["predicted_member"].tolist() == [False, False]


def test_single_image_and_k_larger_than_available():
    preds = np.array([[4, 1, 4]], dtype=np.int32)  # one image, 3 templates
    res = aggregate.attack_identity(preds, 4, "solo", ks=[1, 3, 5], draws=3, seed=1, tau=1)
    assert res["k"].tolist() == [1] * 3 + [3] * 3 + [5] * 3
    assert res["k_used"].tolist() == [1] * 9  # capped at what exists
    assert res["correct_templates"].tolist() == [2] * 9
    skipped = aggregate.attack_identity(preds, 4, "solo", ks=[1, 3, 5], draws=3, seed=1, tau=1, k_policy="skip")
    assert skipped["k"].tolist() == [1] * 3


def test_draws_are_deterministic_and_depend_only_on_their_key():
    a = aggregate.sample_draws(30, 5, 4, seed=3, identity_id="ann", k=5)
    b = aggregate.sample_draws(30, 5, 4, seed=3, identity_id="ann", k=5)
    assert np.array_equal(a, b)
    assert all(len(set(r)) == 5 for r in a)  # without replacement within a draw
    assert not np.array_equal(a, aggregate.sample_draws(30, 5, 4, seed=4, identity_id="ann", k=5))
    assert not np.array_equal(a, aggregate.sample_draws(30, 5, 4, seed=3, identity_id="bob", k=5))
    # draw j alone equals draw j of a batch: no dependence on how many draws were made before
    one = aggregate.sample_draws(30, 5, 1, seed=3, identity_id="ann", k=5)
    assert np.array_equal(one[0], a[0])


def test_attack_identity_random_predictions_deterministic():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 3, size=(12, 21)).astype(np.int32)
    r1 = aggregate.attack_identity(preds, 1, "p", aggregate.DEFAULT_KS, 20, 0, 1)
    r2 = aggregate.attack_identity(preds.copy(), 1, "p", aggregate.DEFAULT_KS, 20, 0, 1)
    for key in r1:
        assert np.array_equal(r1[key], r2[key])
    assert len(r1["k"]) == len(aggregate.DEFAULT_KS) * 20
    assert aggregate.DEFAULT_KS == (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 30)
    # brute-force check of the plurality rule on every (k, draw)
    i = 0
    for k, k_used in aggregate.resolve_ks(aggregate.DEFAULT_KS, 12):
        idx = aggregate.sample_draws(12, k_used, 20, 0, "p", k)
        for d in range(20):
            score = 0
            for t in range(21):
                vals, cnt = np.unique(preds[idx[d], t], return_counts=True)
                top = cnt.max()
                score += int(cnt[vals == 1].sum() == top and (cnt == top).sum() == 1)
            assert r1["correct_templates"][i] == score
            i += 1


def test_unknown_k_policy():
    with pytest.raises(ValueError, match="unknown k policy"):
        aggregate.resolve_ks([5], 2, "bogus")
