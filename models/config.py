"""One config for the three models of a domain, saved as `config.json` beside their weights.

Everything needed to rebuild a model from its weights file lives here: image size and channels,
vocabulary, layer sizes, decoding options and training hyper-parameters. Unknown keys are errors
that name the key, so a typo in a hand-edited file is caught at load time.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
ATTENTIONS = ("bahdanau", "luong", "none")


class ConfigError(ValueError):
    """A config file or value that does not fit the schema; the message names the key."""


@dataclass
class ImageConfig:
    size: int = 64
    channels: int = 3

    def __post_init__(self) -> None:
        if self.size % 16:
            raise ConfigError(f"image.size must be a multiple of 16, got {self.size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"image.channels must be 1 or 3, got {self.channels}")


@dataclass
class CaptionerConfig:
    vocab: list[str] = field(default_factory=list)
    attention: str = "bahdanau"
    filters: list[int] = field(default_factory=lambda: [32, 64, 96])
    embed_dim: int = 48
    units: int = 192
    attention_dim: int = 96
    dropout: float = 0.3
    alpha_c: float = 1.0
    """Weight of the doubly stochastic attention penalty (Show, Attend and Tell, eq. 14)."""
    sentinel: bool = False
    """A visual sentinel (adaptive attention): words may say they do not look at the image.
    `s3e-train fit` turns it on for new captioners with attention; off here so a config that
    does not name it rebuilds the captioner its weights belong to."""
    grounding_weight: float = 1.0
    """Weight of attention supervision from instance regions, where the data has them."""
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    """Instance category -> other words that name it in captions (attention supervision on
    user data with COCO instances)."""
    max_len: int = 24
    grid: int = 0
    """Regions per side of the encoder grid (n = grid**2); derived at fit time, for readers."""
    beam_width: int = 3
    epochs: int = 40
    """A ceiling; early stopping on the validation split ends most fits sooner."""
    batch_size: int = 64
    learning_rate: float = 3e-3
    validation_split: float = 0.1
    patience: int = 8
    min_steps: int = 3000

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ConfigError(
                f"captioner.attention must be one of {ATTENTIONS}, got {self.attention!r}"
            )
        if self.sentinel and self.attention == "none":
            raise ConfigError("captioner.sentinel needs attention (bahdanau or luong), not none")


def grid_size(cfg: CaptionerConfig, image: ImageConfig) -> int:
    """Regions per side of the captioner's encoder grid: one halving per conv block."""
    return image.size // 2 ** len(cfg.filters)


@dataclass
class SegmenterConfig:
    class_names: list[str] = field(default_factory=list)
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    validation_split: float = 0.1
    patience: int = 4
    min_steps: int = 2000


@dataclass
class VAEConfig:
    latent_dim: int = 32
    filters: list[int] = field(default_factory=lambda: [32, 64, 64, 64])
    dense_units: int = 128
    anomaly_pool: int = 4
    """Residuals are average-pooled over pool x pool pixels before taking the anomaly error."""
    beta: float = 1.0
    labels: list[str] = field(default_factory=list)
    """What the label head predicts (multi-label); from meta.json `labels` or the instances'
    categories. Empty: an unsupervised VAE."""
    none_label: str = ""
    """The label given when none of `labels` is (chest: "normal")."""
    label_fraction: float = 0.1
    """Share of the images whose labels training may use (semi-supervised)."""
    label_weight: float = 300.0
    """Weight of the label loss against the ELBO (in nats of the whole image)."""
    labelled_per_batch: int = 16
    train_on: str = "all"
    """"all" images, or only those whose meta says `normal`."""
    anomaly_percentile: float = 95.0
    ood_percentile: float = 99.5
    """Out of domain above this percentile of the training images' scores."""
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_split: float = 0.1
    patience: int = 4
    min_steps: int = 2000

    def __post_init__(self) -> None:
        if self.train_on not in ("all", "normal"):
            raise ConfigError(f"vae.train_on must be 'all' or 'normal', got {self.train_on!r}")
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"vae.label_fraction must be in (0, 1], got {self.label_fraction}")


@dataclass
class EmbedderConfig:
    """The text-image model: query words and image regions in one space."""

    vocab: list[str] = field(default_factory=list)
    dim: int = 48
    embed_dim: int = 48
    filters: int = 96
    max_tokens: int = 12
    """A query is cut to this many words."""
    span_share: float = 0.5
    """Share of training texts that are short spans of a reference (1-3 words), like queries."""
    grounding_weight: float = 1.0
    layout_cells: int = 16
    """Features each region gives the head of the whole-image vector."""
    layout_hidden: list[int] = field(default_factory=lambda: [96])
    """Widths of that head's hidden layers. Counts and relations ("single", "square right
    of") are read there: the shapes models use [192, 96]."""
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    validation_split: float = 0.1
    patience: int = 10
    """Epochs without a better validation precision@10 before stopping: single rare words
    (a relation said one way) keep improving long after the loss flattens."""
    min_steps: int = 2000

    def __post_init__(self) -> None:
        if self.layout_cells < 1 or not all(w >= 1 for w in self.layout_hidden):
            raise ConfigError(
                "embedder.layout_cells and embedder.layout_hidden must be positive, got "
                f"{self.layout_cells} and {self.layout_hidden}"
            )


@dataclass
class ClassifierConfig:
    """A pretrained ImageNet classifier whose classes read as the words people search by."""

    backbone: str = "mobilenet_v2"
    """An asset of `s3e-train assets` holding its weights (`models.pretrained`)."""
    words_file: str = "words.json"
    """Beside config.json: each class's WordNet name, and each word's classes."""
    related_file: str = "related.json"
    """Beside config.json: words that are no label -> the labels that answer them
    (`models.photos.related`); a folder without it searches by the labels' words alone."""
    top_labels: int = 6
    """At most this many words label an image."""
    min_score: float = 0.3
    """A word labels an image when its classes hold at least this much probability."""
    map_classes: int = 10
    """The most probable classes whose activation maps make the labels' heat-maps."""

    def __post_init__(self) -> None:
        if not 0 < self.min_score < 1:
            raise ConfigError(f"classifier.min_score must be in (0, 1), got {self.min_score}")
        for key in ("top_labels", "map_classes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"classifier.{key} must be at least 1, got {getattr(self, key)}")


@dataclass
class FacesConfig:
    """A published face detector: an image with a face is labelled "person"."""

    detector: str = "mediapipe_faces"
    """An asset of `s3e-train assets` holding the detector (`edge.analysis.outputs.faces`)."""
    min_score: float = 0.7
    """A face counts from this detection score. MediaPipe's default, 0.5, also finds faces
    in close-ups of flowers, coins and a bee; 0.7 is chosen on the photo set's development
    split (`bench/photo_set.py`): 3 of its 4 people kept, none of those 4 false faces."""
    segmenter: bool = True
    """Mask the people of a photograph with a face by the asset's selfie segmenter. It masks
    whatever stands in front in any photograph, so it runs only where a face is found."""

    def __post_init__(self) -> None:
        if not 0 < self.min_score < 1:
            raise ConfigError(f"faces.min_score must be in (0, 1), got {self.min_score}")


@dataclass
class ModelsConfig:
    domain: str = "custom"
    image: ImageConfig = field(default_factory=ImageConfig)
    captioner: CaptionerConfig | None = None
    segmenter: SegmenterConfig | None = None
    vae: VAEConfig | None = None
    embedder: EmbedderConfig | None = None
    classifier: ClassifierConfig | None = None
    faces: FacesConfig | None = None

    @property
    def grid(self) -> int:
        """Regions per side of the captioner's encoder grid (n = grid**2)."""
        assert self.captioner is not None
        return grid_size(self.captioner, self.image)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelsConfig:
        path = Path(folder) / CONFIG_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no model config in this folder") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        try:
            return _from_dict(cls, doc, "")
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def _from_dict(cls: type, doc: Any, where: str) -> Any:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where or 'top level'} must be an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}{unknown[0]!r}")
    kwargs = {}
    for key, value in doc.items():
        target = [t for t in typing.get_args(hints[key]) if t is not type(None)] or [hints[key]]
        sub = target[0]
        if dataclasses.is_dataclass(sub) and value is not None:
            kwargs[key] = _from_dict(sub, value, f"{where}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)
