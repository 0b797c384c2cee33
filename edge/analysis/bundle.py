"""Model bundles: a folder of TFLite models, their assets and `bundle.json`, verified on load.

`bundle.json` is one typed document (`BundleDoc`), written by `s3e-convert` and read by the
device: which files there are with their sha256, how to preprocess an image, and which
outputs (`edge.analysis.outputs`) the bundle serves with the models and settings each needs. Nothing
here needs TensorFlow. A bundle is used only when every file it lists lies inside its folder,
exists and matches its hash, so a truncated copy or a tampered model is refused with the name
of the file at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.ingest.imaging import Preprocessing

BUNDLE_FILE = "bundle.json"
FORMAT_VERSION = 2
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models" / "bundles"


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file at fault."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Doc):
    file: str
    sha256: str


class Tensor(_Doc):
    name: str
    tflite_name: str
    shape: list[int]
    dtype: str
    quantization: dict[str, list[float]] = Field(default_factory=dict)


class ModelEntry(FileEntry):
    """One TFLite model: its interface, how it was quantized and what was measured of it."""

    bytes: int
    float_io: bool = True
    scheme: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    tensor_types: dict[str, int] = Field(default_factory=dict)
    gpu: dict[str, Any] = Field(default_factory=dict)
    error_vs_keras: dict[str, dict[str, float]] = Field(default_factory=dict)
    onnx: dict[str, Any] | None = None

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


class OutputSpec(_Doc):
    """What one output of the analysis needs: models run per image, models run per request
    (a query), assets, and its settings (beam width, class names...)."""

    models: list[str]
    query_models: list[str] = Field(default_factory=list)
    assets: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


class BundleDoc(_Doc):
    format_version: Literal[2]
    name: str
    domain: str
    precision: str
    created: str
    versions: dict[str, str] = Field(default_factory=dict)
    preprocessing: Preprocessing
    models: dict[str, ModelEntry]
    assets: dict[str, FileEntry] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec]
    faithfulness: dict[str, Any] | None = None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A verified bundle: its folder and its document."""

    root: Path
    doc: BundleDoc

    @property
    def name(self) -> str:
        return self.doc.name

    @cached_property
    def version(self) -> str:
        """`<name>@<12 hex of sha256(bundle.json)>`: changes whenever any file of the bundle
        does (bundle.json holds every file's hash), so records say exactly what analysed them.
        Read once: every search asks it, and the loaded models do not change with the folder."""
        digest = hashlib.sha256((self.root / BUNDLE_FILE).read_bytes()).hexdigest()[:12]
        return f"{self.name}@{digest}"

    @property
    def precision(self) -> str:
        return self.doc.precision

    def model_path(self, name: str) -> Path:
        try:
            return confined(self.root, self.doc.models[name].file, self.root / BUNDLE_FILE)
        except KeyError:
            raise BundleError(f"{self.root / BUNDLE_FILE}: no model named {name!r}") from None

    def asset(self, name: str) -> Any:
        """The parsed JSON of an asset file (vocabulary, latent space)."""
        try:
            entry = self.doc.assets[name]
        except KeyError:
            raise BundleError(f"{self.root / BUNDLE_FILE}: no asset named {name!r}") from None
        return json.loads(confined(self.root, entry.file, self.root / BUNDLE_FILE).read_text())

    def settings(self, output: str) -> dict[str, Any]:
        return dict(self.doc.outputs[output].settings) if output in self.doc.outputs else {}


def _files(doc: BundleDoc) -> list[FileEntry]:
    out: list[FileEntry] = [*doc.models.values(), *doc.assets.values()]
    for m in doc.models.values():
        if m.onnx is not None:
            out.append(FileEntry(file=m.onnx["file"], sha256=m.onnx["sha256"]))
    return out


def confined(root: Path, name: str, meta: Path) -> Path:
    """A file named in bundle.json, which must lie inside the bundle's folder (no absolute
    paths, no `..`, no link out of it)."""
    path = root / name
    if Path(name).is_absolute() or not path.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{meta}: {name!r} points outside the bundle folder")
    return path


def resolve(name_or_path: str | Path) -> Path:
    """A shipped bundle's name (e.g. "chest-int8") or a path to a bundle folder."""
    path = Path(name_or_path)
    if (path / BUNDLE_FILE).exists():
        return path
    shipped = SHIPPED_DIR / str(name_or_path)
    if (shipped / BUNDLE_FILE).exists():
        return shipped
    known = sorted(p.name for p in SHIPPED_DIR.glob("*") if (p / BUNDLE_FILE).exists())
    raise BundleError(
        f"{name_or_path}: not a bundle folder nor a shipped bundle (shipped: {known})"
    )


def read_doc(meta: Path) -> BundleDoc:
    try:
        raw = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{meta}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{meta}: must hold a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta}: format_version {raw.get('format_version')!r}; this reader knows "
            f"{FORMAT_VERSION} (convert the models again with this version's s3e-convert)"
        )
    try:
        doc = BundleDoc.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{meta}: {where}: {first['msg']}") from None
    if "+" in doc.name:
        raise BundleError(f"{meta}: name {doc.name!r} holds '+', which joins routed bundles")
    for key, out in doc.outputs.items():
        for name in [*out.models, *out.query_models]:
            if name not in doc.models:
                raise BundleError(f"{meta}: outputs.{key} needs model {name!r}, not in models")
    return doc


def load_bundle(name_or_path: str | Path) -> Bundle:
    """Read `bundle.json` and check every listed file against its sha256."""
    root = resolve(name_or_path)
    meta = root / BUNDLE_FILE
    doc = read_doc(meta)
    for entry in _files(doc):
        path = confined(root, entry.file, meta)
        if not path.is_file():
            raise BundleError(f"{path}: listed in {BUNDLE_FILE} but missing")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise BundleError(
                f"{path}: sha256 mismatch (bundle.json has {entry.sha256[:12]}..., "
                f"file has {actual[:12]}...): the file is corrupt or was modified"
            )
    return Bundle(root, doc)
