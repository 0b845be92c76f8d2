"""purelearn: online training of spiking networks as pure ``torch.func`` step functions."""

from . import compile, distributed, interop, neurons, nn, online, optim, schedules, surrogate, sweep, tree
from .scan import scan

__all__ = ["compile", "distributed", "interop", "nn", "neurons", "online", "optim", "schedules", "surrogate", "sweep",
           "tree", "scan"]
__version__ = "0.1.0"
