"""The store: SQLite and files on disk, the queue every later stage reads from.

`records` holds the typed contracts (an analysis, a record), `schema` the tables and their
migrations, `files` the originals and derived files, and `store` the reads and writes.
"""
