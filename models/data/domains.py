"""Registry of the generated domains: name -> generator module with one shared shape."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Protocol

import numpy as np

from models.data import chest, shapes
from models.data.sample import Sample


class Domain(Protocol):
    """What `make-data` needs of a domain."""

    CLASS_NAMES: tuple[str, ...]
    CATEGORIES: tuple[str, ...]
    CHANNELS: int
    generate: Callable[[np.random.Generator, int], Sample]


DOMAINS: dict[str, ModuleType] = {"shapes": shapes, "chest": chest}


def get_domain(name: str) -> Domain:
    """The generator for `name`; a clear error lists the known ones."""
    try:
        return DOMAINS[name]  # type: ignore[return-value]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; choose one of {sorted(DOMAINS)}") from None
