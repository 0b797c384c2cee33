"""The device's search indexes, all derived from the store: the keyword index (Tantivy), the
VAE latents' nearest-neighbour graph ("similar images"), one more for the catch-all bundle's
latents where the device routes between two (another bundle's latent is another space), and
the word profiles (the semantic side's first stage). The `index` sink keeps them up to the
store; search and the API read them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.search.index import SearchIndex
from edge.search.vectors import VectorIndex
from edge.store.store import Store


class Indexes:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        heap_mb: int,
        bundle: Callable[[], str],
        catch_all: Callable[[], str] = lambda: "",
    ) -> None:
        """`bundle`: the version of the bundle analysing every image now (only its vectors
        are indexed), `catch_all`: the one analysing what that one refuses ("": none).
        Raises IndexBusyError when another process holds the keyword index."""
        self.keyword = SearchIndex(data_dir / "index", heap_mb)
        folder = data_dir / "vectors"
        self.latent = VectorIndex(store, folder, "latent", "l2sq", bundle)
        self.catch_all = VectorIndex(store, folder / "catch-all", "latent", "l2sq", catch_all)
        self.profile = VectorIndex(store, folder, "profile", "ip", bundle, "columns")
        self.vectors = (self.latent, self.catch_all, self.profile)
        self.latents = (self.latent, self.catch_all)
        """"Similar images" looks for an image's latent in each, in order."""

    def open(self) -> None:
        """Load the vector indexes and catch them up with the store in the background."""
        for v in self.vectors:
            v.open()
            threading.Thread(target=v.refresh, daemon=True, name=f"{v.blob}-catch-up").start()

    def refresh(self) -> None:
        """Bring the vector indexes up to the store, and save them when due."""
        for v in self.vectors:
            v.refresh()
            v.save()

    def reset(self) -> None:
        self.keyword.clear()
        for v in self.vectors:
            v.reset()

    def close(self) -> None:
        self.keyword.close()
        for v in self.vectors:
            v.save(force=True)

    def health(self) -> dict[str, Any]:
        return {
            "latent": self.latent.health(),
            "catch_all_latent": self.catch_all.health(),
            "profile": self.profile.health(),
        }
