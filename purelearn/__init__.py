"""purelearn: online training of spiking networks as pure ``torch.func`` step functions."""

from . import compile, neurons, nn, online, optim, surrogate, sweep, tree
from .scan import scan

__all__ = ["compile", "nn", "neurons", "online", "optim", "surrogate", "sweep", "tree", "scan"]
__version__ = "0.1.0"
