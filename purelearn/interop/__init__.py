"""Exchange with other frameworks.

- :mod:`purelearn.interop.torch` converts ``torch.nn.Sequential`` / SpikingJelly networks into
  purelearn models and writes params back as ``state_dict``s (``from_torch``, ``to_state_dict``,
  ``from_state_dict``; also reachable as ``purelearn.nn.*``).
- :mod:`purelearn.interop.nir` writes and reads NIR graphs (``to_nir``, ``from_nir``), the exchange
  format of SpikingJelly, snnTorch, Norse, Sinabs, Lava and neuromorphic hardware; it needs the
  optional ``nir`` package (``pip install 'purelearn[nir]'``), imported only when called.
"""

from .nir import from_nir, to_nir
from .torch import from_state_dict, from_torch, to_state_dict

__all__ = ["from_torch", "to_state_dict", "from_state_dict", "to_nir", "from_nir"]
