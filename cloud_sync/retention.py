"""The local quota on originals: over it, delete the oldest originals already confirmed in S3.

Only the original goes. The record, thumbnail and mask stay, so search and the heat-maps still
work, and `/images/{id}` redirects to a presigned S3 URL. An original not yet synced is
never deleted, whatever the quota says: the quota yields, and says so.
"""

from __future__ import annotations

import logging

from edge.store.store import Store

log = logging.getLogger("s3e.sync")


def enforce_quota(store: Store, quota_bytes: int) -> tuple[int, int, bool]:
    """Delete synced originals, oldest first, until the originals fit `quota_bytes`.
    (files deleted, bytes freed, still over the quota). The file goes first, then the mark:
    a crash in between leaves a mark to set again, never a marked file that stays."""
    used = store.local_bytes()
    deleted = freed = 0
    while used > quota_bytes:
        batch = store.evictable()
        if not batch:
            break
        gone = []
        for rid, ext, size in batch:
            if used <= quota_bytes:
                break
            store.original_path(rid, ext).unlink(missing_ok=True)
            gone.append(rid)
            used -= size
            freed += size
        store.mark_evicted(gone)
        deleted += len(gone)
    if deleted:
        log.info("quota: deleted %d synced originals (%.1f MB) kept in S3", deleted, freed / 1e6)
    return deleted, freed, used > quota_bytes
