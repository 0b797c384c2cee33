"""The VAE's calibration without TensorFlow: labels with a none label, anomaly and
out-of-domain scores, the pooled residual."""

from __future__ import annotations

import numpy as np

from core.domain import fit_domain_model, pixel_signals, segmenter_entropy
from core.latent import fit_latent_space, reconstruction_error
from models.vae_training import label_space


def test_pooled_residual_ignores_pixel_noise_but_sees_a_small_blob() -> None:
    rng = np.random.default_rng(0)
    clean = np.zeros((1, 64, 64, 1), np.float32)
    noisy = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)
    blob = clean.copy()
    blob[0, 20:26, 30:36] = 0.5
    assert reconstruction_error(blob, clean)[0] > 5 * reconstruction_error(noisy, clean)[0]
    # plain MSE would rank them the other way round
    assert ((noisy - clean) ** 2).mean() > 0.5 * ((blob - clean) ** 2).mean()


def test_a_label_only_ever_given_alone_is_the_none_label() -> None:
    assert label_space([["normal"], ["nodule"], ["effusion", "nodule"]]) == (
        ["effusion", "nodule"],
        "normal",
    )
    assert label_space([["red", "circle"], ["blue", "square"], ["blue", "circle"]]) == (
        ["blue", "circle", "red", "square"],
        "",
    )
    assert label_space([["dog"], ["cat"], ["bird"]]) == (["bird", "cat", "dog"], "")


def space(rng: np.random.Generator):
    mu = rng.normal(0, 1, (500, 4))
    errors, normal = np.arange(500.0) / 100, np.arange(500) < 200
    mse = rng.uniform(0, 1, 500)
    return fit_latent_space(
        ["effusion", "nodule"], "normal", mu, errors, normal, mse, True, 95, 99.5
    )


def test_labels_threshold_probabilities_and_fall_back_to_the_none_label() -> None:
    s = space(np.random.default_rng(1))
    assert s.label(np.array([0.9, 0.2])) == [("effusion", 0.9)]
    assert s.label(np.array([0.7, 0.95])) == [("nodule", 0.95), ("effusion", 0.7)]
    got = s.label(np.array([0.1, 0.3]))
    assert got[0][0] == "normal" and abs(got[0][1] - 0.7) < 1e-9


def test_anomaly_is_calibrated_on_normal_images_and_ood_on_all() -> None:
    s = space(np.random.default_rng(2))
    assert abs(s.threshold - np.percentile(np.arange(200) / 100, 95)) < 1e-9
    assert s.anomaly(np.array([s.threshold]))[0] == 1.0
    far = np.array([[8.0, 8.0, 8.0, 8.0]])
    assert s.ood_score(np.array([0.5]), far)[0] > 2
    assert s.ood_score(np.array([0.5]), np.zeros((1, 4)))[0] < 1
    assert s.ood_score(np.array([5.0]), np.zeros((1, 4)))[0] > 4


def test_a_finding_the_label_head_gives_makes_an_image_anomalous_whatever_its_residual() -> None:
    s = space(np.random.default_rng(3))
    low = np.array([0.2 * s.threshold, 0.2 * s.threshold])
    got = s.anomaly(low, np.array([[0.9, 0.1], [0.05, 0.05]]))
    assert abs(got[0] - (0.2 + 0.9 / 0.5)) < 1e-9 and abs(got[1] - 0.2) < 1e-9
    assert abs(s.anomaly(np.array([3 * s.threshold]), np.array([[0.9, 0.1]]))[0] - 4.8) < 1e-9
    s.counterfactual = False  # a domain without a none label: labels are not findings
    assert abs(s.anomaly(low, np.array([[0.9, 0.1], [0.1, 0.2]]))[0] - 0.2) < 1e-9


def test_images_with_a_saturated_finding_still_read_apart_by_their_residual() -> None:
    s = space(np.random.default_rng(3))
    errors = np.array([0.3, 0.9, 1.6]) * s.threshold
    got = s.anomaly(errors, np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert np.all(got > 1) and len(set(np.round(got, 6))) == 3
    assert list(np.argsort(got)) == [0, 1, 2], "the residual orders them"


def test_the_domain_model_flags_signals_no_training_image_has() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    pixels = np.column_stack([rng.normal(0.7, 0.05, n), rng.normal(0.06, 0.01, n)])
    mse, dist, ent = (rng.lognormal(m, 0.2, n) for m in (-5.0, 1.5, -2.5))
    regions = rng.normal(0, 1, (n, 8))
    m = fit_domain_model(pixels, mse, dist, ent, regions, percentile=99.5)
    inside = m.score(m.vectors(pixels, mse, dist, ent, regions))
    assert 0.003 <= (inside > 1).mean() <= 0.007
    one = (
        np.array([[0.7, 0.06]]),
        np.array([np.exp(-5.0)]),
        np.array([np.exp(1.5)]),
        np.array([np.exp(-2.5)]),
    )
    typical = regions[:1]  # in 8 dimensions, exactly the mean is no typical feature
    assert m.score(m.vectors(*one, typical))[0] < 0.6
    assert m.score(m.vectors(*one, np.full((1, 8), 6.0)))[0] > 1  # an odd encoder feature
    noisy = (np.array([[0.95, 0.3]]), *one[1:])  # incompressible and rough
    assert m.score(m.vectors(*noisy, typical))[0] > 1
    flat = (np.array([[0.1, 0.0]]), *one[1:])  # a blank image
    assert m.score(m.vectors(*flat, typical))[0] > 1


def test_pixel_signals_rank_noise_above_flat_and_entropy_is_zero_when_certain() -> None:
    rng = np.random.default_rng(5)
    flat, noise = np.full((32, 32, 1), 0.5), rng.uniform(0, 1, (32, 32, 1))
    assert pixel_signals(noise)[0] > 0.9 > 0.1 > pixel_signals(flat)[0]
    assert pixel_signals(flat)[1] == 0.0 < pixel_signals(noise)[1]
    certain = np.zeros((4, 4, 3))
    certain[..., 1] = 50.0
    assert segmenter_entropy(certain) < 1e-6 < segmenter_entropy(np.zeros((4, 4, 3)))
