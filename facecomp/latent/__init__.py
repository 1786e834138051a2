"""The latent space: the code statistics shipped in the weights, the named directions learned from
labels, and what the explorer does with them (sliders, morphs, sample grids)."""
