"""`s3e-edge`, the on-device daemon: capture -> ingest -> store -> analysis -> sinks (the
search index, MQTT, S3) -> search -> HTTP API, one package a stage."""
