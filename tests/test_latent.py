"""The VAE's latent space: cluster names, anomaly calibration, the pooled residual."""

from __future__ import annotations

import numpy as np

from models.latent import LatentSpace, reconstruction_error


def test_pooled_residual_ignores_pixel_noise_but_sees_a_small_blob() -> None:
    rng = np.random.default_rng(0)
    clean = np.zeros((1, 64, 64, 1), np.float32)
    noisy = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)
    blob = clean.copy()
    blob[0, 20:26, 30:36] = 0.5
    assert reconstruction_error(blob, clean)[0] > 5 * reconstruction_error(noisy, clean)[0]
    # plain MSE would rank them the other way round
    assert ((noisy - clean) ** 2).mean() > 0.5 * ((blob - clean) ** 2).mean()


def test_clusters_are_named_by_their_most_distinctive_label() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0, 0.1, (60, 2))
    b = rng.normal(5, 0.1, (40, 2))
    latents = np.concatenate([a, b])
    # cluster b: 50% "effusion", 50% "normal"; "normal" is the majority everywhere
    labels = ["normal"] * 60 + ["effusion"] * 20 + ["normal"] * 20
    space = LatentSpace.fit(latents, labels, np.linspace(0, 1, 100), k=2, percentile=95)
    assert sorted(space.names) == ["effusion", "normal"]
    assert space.label(np.array([[5.0, 5.0]])) == ["effusion"]
    assert space.purity == (60 + 20) / 100


def test_anomaly_is_error_over_the_training_percentile() -> None:
    space = LatentSpace.fit(np.zeros((101, 2)), None, np.arange(101.0), k=1, percentile=95)
    assert space.threshold == 95.0
    np.testing.assert_allclose(space.anomaly(np.array([47.5, 190.0])), [0.5, 2.0])
    assert space.names == ["cluster-0"] and space.purity is None
