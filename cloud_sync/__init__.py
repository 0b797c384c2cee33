"""S3E cloud sync: a device's originals and their sidecars to S3, durable and idempotent."""
