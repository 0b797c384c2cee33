"""What the device and the trainer compute the same way, in numpy alone: the caption tokens
(`tokens`), a query's words and their scoring against an image's regions (`semantic`), beam
search over a decoder step (`decoding`), the VAE's latent space (`latent`) and the
out-of-domain verdict (`domain`). The device imports this, never `models/` (TensorFlow)."""
