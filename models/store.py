"""Where each model's weights live in a models folder, and how to rebuild a model from them.

Models are rebuilt from `config.json` and their weights, so no custom-object registry is needed
and the converter gets exactly the graph that was trained.
"""

from __future__ import annotations

from pathlib import Path

import keras

from core.latent import LatentSpace
from models.captioner import Captioner
from models.config import ConfigError, ModelsConfig
from models.segmenter import build_segmenter
from models.vae import build_vae_decoder, build_vae_encoder

FILES = {
    "captioner": ("captioner_encoder.weights.h5", "captioner_step.weights.h5"),
    "segmenter": ("segmenter.weights.h5",),
    "vae": ("vae_encoder.weights.h5", "vae_decoder.weights.h5"),
    "embedder": ("text_encoder.weights.h5", "region_projection.weights.h5"),
}


def has_model(folder: Path, name: str) -> bool:
    return all((Path(folder) / f).exists() for f in FILES[name])


def _load(model: keras.Model, path: Path) -> None:
    try:
        model.load_weights(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: weights file missing") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load weights ({e})") from None


def load_captioner(folder: Path, cfg: ModelsConfig | None = None) -> Captioner:
    cfg = cfg or ModelsConfig.load(folder)
    if cfg.captioner is None:
        raise ConfigError(f"{folder}: config.json has no captioner section")
    cap = Captioner(cfg.captioner, cfg.image)
    _load(cap.encoder, Path(folder) / FILES["captioner"][0])
    _load(cap.step, Path(folder) / FILES["captioner"][1])
    return cap


def save_captioner(cap: Captioner, folder: Path) -> None:
    cap.encoder.save_weights(Path(folder) / FILES["captioner"][0])
    cap.step.save_weights(Path(folder) / FILES["captioner"][1])


def load_segmenter(folder: Path, cfg: ModelsConfig | None = None) -> keras.Model:
    cfg = cfg or ModelsConfig.load(folder)
    if cfg.segmenter is None:
        raise ConfigError(f"{folder}: config.json has no segmenter section")
    model = build_segmenter(cfg.segmenter, cfg.image)
    _load(model, Path(folder) / FILES["segmenter"][0])
    return model


def load_vae(
    folder: Path, cfg: ModelsConfig | None = None
) -> tuple[keras.Model, keras.Model, LatentSpace]:
    cfg = cfg or ModelsConfig.load(folder)
    if cfg.vae is None:
        raise ConfigError(f"{folder}: config.json has no vae section")
    enc, dec = build_vae_encoder(cfg.vae, cfg.image), build_vae_decoder(cfg.vae, cfg.image)
    _load(enc, Path(folder) / FILES["vae"][0])
    _load(dec, Path(folder) / FILES["vae"][1])
    return enc, dec, LatentSpace.load(folder)


def load_embedder(folder: Path, cfg: ModelsConfig | None = None) -> tuple[keras.Model, keras.Model]:
    """(text encoder, region projection) of the text-image model."""
    from models.embedder import build_region_projection, build_text_encoder

    cfg = cfg or ModelsConfig.load(folder)
    if cfg.embedder is None or cfg.captioner is None:
        raise ConfigError(f"{folder}: config.json has no embedder (or captioner) section")
    text = build_text_encoder(cfg.embedder)
    projection = build_region_projection(cfg.embedder, cfg.captioner.filters[-1], cfg.grid**2)
    _load(text, Path(folder) / FILES["embedder"][0])
    _load(projection, Path(folder) / FILES["embedder"][1])
    return text, projection
