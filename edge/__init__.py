"""S3E on-device daemon (issue 4): capture, TFLite inference, store, index, search."""
