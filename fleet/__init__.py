"""The fleet: many devices' analyses in one archive (LanceDB on S3), searchable in one place."""
