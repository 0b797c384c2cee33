"""S3E cloud sync (issue 6): originals to S3, durable and idempotent."""
