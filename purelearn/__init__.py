"""purelearn: online training of spiking networks as pure ``torch.func`` step functions."""

from . import nn, neurons, surrogate, tree

__all__ = ["nn", "neurons", "surrogate", "tree"]
__version__ = "0.1.0"
