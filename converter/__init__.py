"""S3E model converter (issue 3): TFLite quantization, GPU-delegate check, ONNX, bundles."""
