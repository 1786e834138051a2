"""The networks: the AE and VAE, the detail layer, the sharp decoding's refiner, and dlib's face ResNet."""
