"""Model graphs, a few training steps, and the fit/eval CLI on generated and user data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from core.tokens import SPECIALS, Vocabulary
from models.captioner import Captioner
from models.cli import run
from models.config import (
    CaptionerConfig,
    ConfigError,
    EmbedderConfig,
    ImageConfig,
    ModelsConfig,
    SegmenterConfig,
    VAEConfig,
)
from models.segmenter import area_fractions, build_segmenter
from models.vae import build_vae_decoder, build_vae_encoder

VOCAB = [*SPECIALS, "a", "red", "circle", "left", "of"]


@pytest.mark.parametrize(
    ("attention", "keys_dim", "sentinel"),
    [("bahdanau", 96, True), ("bahdanau", 96, False), ("luong", 192, True), ("none", 96, False)],
)
def test_captioner_encoder_and_step_shapes(attention: str, keys_dim: int, sentinel: bool) -> None:
    cc = CaptionerConfig(vocab=VOCAB, attention=attention, sentinel=sentinel)
    cap = Captioner(cc, ImageConfig(64, 3))
    regions, keys, h, c = cap.encoder(tf.zeros((2, 64, 64, 3)))
    assert regions.shape == (2, 64, 96) and keys.shape == (2, 64, keys_dim)
    assert h.shape == c.shape == (2, 192)
    logits, h2, _, alpha, beta = cap.step([tf.constant([1, 4]), h, c, regions, keys])
    assert logits.shape == (2, len(VOCAB)) and h2.shape == (2, 192) and alpha.shape == (2, 64)
    assert beta.shape == (2,) and (beta.numpy() > 0).all() == sentinel
    np.testing.assert_allclose(alpha.numpy().sum(-1) + beta.numpy(), 1.0, rtol=1e-5)
    assert [i.name for i in cap.step.inputs] == ["token", "h", "c", "regions", "keys"]


def test_a_sentinel_needs_attention() -> None:
    with pytest.raises(ConfigError, match="sentinel needs attention"):
        CaptionerConfig(vocab=VOCAB, attention="none", sentinel=True)


def test_the_embedder_head_needs_positive_widths() -> None:
    with pytest.raises(ConfigError, match=r"embedder\.layout_hidden must be positive.*\[96, 0\]"):
        EmbedderConfig(layout_hidden=[96, 0])


def test_fit_help_gives_real_defaults_and_no_none(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text  # a flag left to the config says the config's value
    assert "the whole-image vector (default 16)" in text


def test_caption_returns_one_attention_map_per_word() -> None:
    cap = Captioner(CaptionerConfig(vocab=VOCAB, max_len=6), ImageConfig(64, 1))
    out = cap.caption(np.random.default_rng(0).random((3, 64, 64, 1), np.float32), beam_width=2)
    assert len(out) == 3
    for c in out:
        assert c.attention.shape == (len(c.tokens), 8, 8) and c.visual.shape == (len(c.tokens),)


def test_segmenter_and_vae_shapes() -> None:
    seg = build_segmenter(SegmenterConfig(class_names=["bg", "a", "b"]), ImageConfig(64, 1))
    assert seg(tf.zeros((1, 64, 64, 1))).shape == (1, 64, 64, 3)
    enc = build_vae_encoder(VAEConfig(latent_dim=8), ImageConfig(64, 3))
    dec = build_vae_decoder(VAEConfig(latent_dim=8), ImageConfig(64, 3))
    mu, log_var = enc(tf.zeros((2, 64, 64, 3)))
    assert mu.shape == log_var.shape == (2, 8)
    assert dec(mu).shape == (2, 64, 64, 3)
    mask = np.zeros((4, 4), np.uint8)
    mask[:1] = 2
    assert area_fractions(mask, ["bg", "a", "b"]) == {"bg": 0.75, "b": 0.25}


def test_a_few_captioner_steps_reduce_the_loss() -> None:
    tf.keras.utils.set_random_seed(0)
    vocab = Vocabulary(VOCAB)
    cap = Captioner(CaptionerConfig(vocab=VOCAB, max_len=8, dropout=0.0), ImageConfig(64, 3))
    x = tf.random.uniform((8, 64, 64, 3), seed=1)
    seqs = tf.constant([vocab.encode("a red circle left of a red circle", 8)] * 8)
    target = np.zeros((8, 1, 64), np.float32)
    target[:, 0, 9] = 1.0  # "red circle" is in cell (1, 1)
    tok = np.full((8, 7), -2, np.int32)
    tok[:, 1:3] = 0
    args = (tf.constant(target), tf.constant(tok))
    opt = tf.keras.optimizers.Adam(3e-3)
    before = cap.loss(x, seqs, *args, training=False)
    for _ in range(15):
        with tf.GradientTape() as tape:
            t = cap.loss(x, seqs, *args, training=True)
            loss = t.ce + t.penalty + t.grounding + t.looking
        opt.apply(tape.gradient(loss, cap.trainable_variables), cap.trainable_variables)
    after = cap.loss(x, seqs, *args, training=False)
    assert float(after.ce) < 0.5 * float(before.ce)
    assert float(after.grounding) < float(before.grounding)


@pytest.mark.parametrize("model", ["segmenter", "vae"])
def test_fit_cli_trains_saves_weights_config_and_falling_history(
    model: str, chest_small: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    args = ["fit", model, "--data", str(chest_small), "--out", str(out), "--epochs", "4"]
    if model == "vae":
        args += ["--train-on", "normal"]
    assert run(args) == 0
    hist = json.loads((out / f"history_{model}.json").read_text())["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    cfg = ModelsConfig.load(out)
    assert cfg.domain == "chest" and cfg.image.channels == 1
    assert getattr(cfg, model) is not None


def test_user_coco_folder_goes_through_fit_and_eval_unchanged(tmp_path: Path) -> None:
    from support.media import user_folder

    data = user_folder(tmp_path / "user", n=8)
    out = tmp_path / "models"
    assert run(["fit", "captioner", "--data", str(data), "--out", str(out), "--epochs", "2"]) == 0
    cfg = ModelsConfig.load(out)
    assert cfg.domain == "custom" and cfg.image.channels == 3
    assert "dog" in cfg.captioner.vocab  # type: ignore[union-attr]
    report_path = tmp_path / "eval.json"
    assert run(["eval", "--models", str(out), "--data", str(data), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"} <= set(report["captioner"])
    assert "segmenter" not in report and "object_f1" not in report["captioner"]


def test_fit_segmenter_without_masks_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from support.media import user_folder

    data = user_folder(tmp_path / "user", n=3)
    assert run(["fit", "segmenter", "--data", str(data), "--out", str(tmp_path / "m")]) == 1
    assert "no masks/ folder" in caplog.text


def test_vae_on_normals_needs_normal_images(
    shapes_small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = [
        "fit",
        "vae",
        "--data",
        str(shapes_small),
        "--out",
        str(tmp_path / "m"),
        "--train-on",
        "normal",
    ]
    assert run(args) == 1
    assert "no image has meta 'normal': true" in caplog.text


def test_config_unknown_key_is_named(tmp_path: Path) -> None:
    ModelsConfig(captioner=CaptionerConfig(vocab=VOCAB)).save(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["captioner"]["beam_widht"] = 5
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"unknown key captioner\.'beam_widht'"):
        ModelsConfig.load(tmp_path)
