"""Training jobs; submodules import torch, this package does not."""
