"""Model bundles: a folder of TFLite models, their assets and `bundle.json`, verified on load.

Written by `s3e-convert`, read by the daemon. Nothing here needs TensorFlow. A bundle is only
used when every file it lists exists and matches its sha256, so a truncated copy or a tampered
model is refused with the name of the file at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUNDLE_FILE = "bundle.json"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models" / "bundles"


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file at fault."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A verified bundle: its folder and its parsed `bundle.json`."""

    root: Path
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def version(self) -> str:
        """`<name>@<12 hex of sha256(bundle.json)>`: changes whenever any file of the bundle
        does (bundle.json holds every file's hash), so records say exactly what analysed them."""
        digest = hashlib.sha256((self.root / BUNDLE_FILE).read_bytes()).hexdigest()[:12]
        return f"{self.name}@{digest}"

    @property
    def precision(self) -> str:
        return str(self.doc["precision"])

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc["models"])

    def model_path(self, name: str) -> Path:
        try:
            return confined(self.root, self.doc["models"][name]["file"], self.root / BUNDLE_FILE)
        except KeyError:
            raise BundleError(f"{self.root / BUNDLE_FILE}: no model named {name!r}") from None

    def asset(self, name: str) -> Any:
        """The parsed JSON of an asset file (vocabulary, latent space)."""
        try:
            entry = self.doc["assets"][name]
        except KeyError:
            raise BundleError(f"{self.root / BUNDLE_FILE}: no asset named {name!r}") from None
        return json.loads(confined(self.root, entry["file"], self.root / BUNDLE_FILE).read_text())


def _entries(doc: dict[str, Any], meta: Path) -> list[dict[str, Any]]:
    """Every file entry of models (with their ONNX twins) and assets, each checked to name a
    file and its hash."""
    out = []
    for section in ("models", "assets"):
        entries = doc.get(section, {})
        if not isinstance(entries, dict):
            raise BundleError(f"{meta}: {section!r} must be an object")
        for name, entry in entries.items():
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("file"), str)
                and isinstance(entry.get("sha256"), str)
            ):
                raise BundleError(f"{meta}: {section}.{name} lacks a 'file' or 'sha256' string")
            out.append(entry)
            if isinstance(entry.get("onnx"), dict):
                out.append(entry["onnx"])
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


def load_bundle(name_or_path: str | Path) -> Bundle:
    """Read `bundle.json` and check every listed file against its sha256."""
    root = resolve(name_or_path)
    meta = root / BUNDLE_FILE
    try:
        doc = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{meta}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{meta}: must hold a JSON object")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta}: format_version {doc.get('format_version')!r}; "
            f"this reader knows {FORMAT_VERSION}"
        )
    for entry in _entries(doc, meta):
        path = confined(root, entry["file"], meta)
        if not path.is_file():
            raise BundleError(f"{path}: listed in {BUNDLE_FILE} but missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise BundleError(
                f"{path}: sha256 mismatch (bundle.json has {entry['sha256'][:12]}..., "
                f"file has {actual[:12]}...): the file is corrupt or was modified"
            )
    return Bundle(root, doc)
