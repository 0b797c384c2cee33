"""S3E model converter: trained models to verified device bundles (TFLite, GPU check, ONNX)."""
