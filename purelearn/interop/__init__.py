"""Exchange with other frameworks: :mod:`purelearn.interop.torch` converts ``torch.nn.Sequential`` /
SpikingJelly networks into purelearn models and writes params back as ``state_dict``s.

``from_torch``, ``to_state_dict`` and ``from_state_dict`` are also reachable as ``purelearn.nn.*``.
"""

from .torch import from_state_dict, from_torch, to_state_dict

__all__ = ["from_torch", "to_state_dict", "from_state_dict"]
