"""The store: SQLite and files on disk, the queue every later stage reads from.

`records` holds the typed contracts (an analysis, a record), `schema` the tables and their
migrations, `store` the reads and writes, and `views` what each consumer (API, index, MQTT,
S3) sees of a record.
"""
