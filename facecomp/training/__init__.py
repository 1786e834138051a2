"""Training: the AE and VAE, the detail layers and the sharp decoding, on one shared infrastructure."""
