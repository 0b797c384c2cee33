"""Ingest: image bytes from any capture source checked, decoded, thumbnailed and handed to the
store durably (`ingestor`), with the decoding and preprocessing rules in `imaging`."""
