"""The one maintenance job (run it from one process only: it conflicts with concurrent
re-indexing): the indexes search needs, created once, then compaction and index refresh.

Text: an inverted index on `text` (caption and labels). Scalars: a bitmap on `device`,
`source` and `bundle`, B-trees on `captured_at` and `anomaly`, a label list on `labels`.
Vectors: IVF_PQ on `latent` ("similar images") once the table has enough rows to train it;
the `profile` column is scanned exactly (its queries are sparse: see `edge.search.vectors`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lancedb.index import FTS

from fleet.archive import Archive

log = logging.getLogger("s3e.fleet.maintain")
SCALARS = {
    "device": "BITMAP",
    "source": "BITMAP",
    "bundle": "BITMAP",
    "captured_at": "BTREE",
    "anomaly": "BTREE",
    "labels": "LABEL_LIST",
}
VECTOR_MIN_ROWS = 10_000
"""Below this, a flat scan of the latents is as fast as an index, and IVF cannot train."""


def ensure_indexes(archive: Archive) -> list[str]:
    """Create the indexes that are missing; returns their names."""
    table = archive.table
    if not table.count_rows():
        return []
    have = {i.name for i in table.list_indices()}
    made = []
    if "text_idx" not in have:
        # no stemming: the fuzzy query's terms are not stemmed, so "effusion" (stem "effus")
        # would be two edits from its own indexed form and never match
        table.create_index("text", config=FTS(with_position=True, stem=False), name="text_idx")
        made.append("text_idx")
    for column, kind in SCALARS.items():
        name = f"{column}_idx"
        if name not in have:
            table.create_scalar_index(column, index_type=kind, name=name)
            made.append(name)
    n = table.count_rows()
    if "latent_idx" not in have and n >= VECTOR_MIN_ROWS:
        table.create_index(
            metric="l2",
            vector_column_name="latent",
            index_type="IVF_PQ",
            num_partitions=max(8, int(n**0.5) // 4),
            num_sub_vectors=8,
            name="latent_idx",
        )
        made.append("latent_idx")
    return made


def maintain(archive: Archive) -> dict[str, Any]:
    """Indexes, then compaction and the refresh of every index over the new rows."""
    t0 = time.monotonic()
    made = ensure_indexes(archive)
    archive.table.optimize()
    out = {"created": made, "rows": archive.count(), "seconds": round(time.monotonic() - t0, 2)}
    log.info("maintenance: %s", out)
    return out
