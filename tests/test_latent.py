"""The VAE's calibration without TensorFlow: labels with a none label, anomaly and
out-of-domain scores, the pooled residual."""

from __future__ import annotations

import numpy as np

from models.latent import fit_latent_space, reconstruction_error
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
        ["effusion", "nodule"], "normal")  # fmt: skip
    assert label_space([["red", "circle"], ["blue", "square"], ["blue", "circle"]]) == (
        ["blue", "circle", "red", "square"], "")  # fmt: skip
    assert label_space([["dog"], ["cat"], ["bird"]]) == (["bird", "cat", "dog"], "")


def space(rng: np.random.Generator):
    mu = rng.normal(0, 1, (500, 4))
    errors, normal = np.arange(500.0) / 100, np.arange(500) < 200
    mse = rng.uniform(0, 1, 500)
    return fit_latent_space(["effusion", "nodule"], "normal", mu, errors, normal, mse, True, 95,
                            99.5)  # fmt: skip


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
