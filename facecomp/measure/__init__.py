"""Measurements: image and identity metrics, realism, the evaluation and latent-space reports, the
benchmark, and the figures and pages made from their JSON."""
