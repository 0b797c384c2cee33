"""S3E models: generated data sets, captioner with attention, U-Net segmenter, VAE."""
