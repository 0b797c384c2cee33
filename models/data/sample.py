"""The unit a domain generator produces."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Sample(NamedTuple):
    """One generated example."""

    image: np.ndarray
    """uint8, (H, W, 3) for colour domains or (H, W) for grey-scale ones."""
    mask: np.ndarray
    """uint8 (H, W) class ids, indexing the domain's CLASS_NAMES."""
    meta: dict[str, Any]
    """Ground truth the captions were written from; `labels` and `primary_label` always present."""
    captions: list[str]
    """Reference captions, paraphrases of one another; the first is canonical."""
