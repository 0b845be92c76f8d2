r"""The classification task every run trains: weighted one-hot targets, the per-step loss, the prediction.

Every model (:mod:`purelearn.models`) ends with a non-spiking linear readout whose output ``z_t``
[N, C] is a logit vector at every step. The per-step loss handed to the learners is the
cross-entropy of the readout against a *weighted one-hot* target::

    target_t = w_t · onehot(label)            (y_seq [T, N, C])
    l_t      = cross_entropy(z_t, target_t) = w_t · CE(z_t, label)      (mean over the batch)
    predict  = argmax_c Σ_t v_t · z_t[c]

The time weights (:func:`time_weights`) are 1 at every step (``"uniform"``), 1 on the last quarter
of the steps and 0 before (``"late"``), ``(t+1)/T`` (``"ramp"``) or only the last step (``"last"``);
``Config.weighting`` picks ``w_t``, ``Config.predict`` picks ``v_t``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["EVAL_SEED", "WEIGHTINGS", "LossFn", "loss_fn", "time_weights", "targets", "predict"]

#: The seed of the test set's encoding (the same for every run, so test accuracies compare).
EVAL_SEED = 1234
WEIGHTINGS = ("uniform", "ramp", "late", "last")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_fn(y_t: torch.Tensor, target_t: torch.Tensor) -> torch.Tensor:
    """Per-step loss: cross-entropy of the readout ``y_t`` [N, C] against soft targets [N, C]."""
    return F.cross_entropy(y_t, target_t)


def time_weights(weighting: str, T: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``w_t`` [T]: ones (uniform), ``(t+1)/T`` (ramp), ones on the last quarter (late) or
    ``[0, …, 0, 1]`` (last)."""
    t = torch.arange(T, device=device)
    if weighting == "uniform":
        return torch.ones(T, dtype=dtype, device=device)
    if weighting == "ramp":
        return (t + 1).to(dtype) / T
    if weighting == "late":
        return (t >= T - max(T // 4, 1)).to(dtype)
    if weighting == "last":
        return (t == T - 1).to(dtype)
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def targets(labels: torch.Tensor, weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``y_seq`` [T, N, C] = ``w_t · onehot(labels)``."""
    onehot = F.one_hot(labels, num_classes).to(weights.dtype)
    return weights[:, None, None] * onehot


def predict(y_seq: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class predictions [N] from readouts [T, N, C]: ``argmax Σ_t w_t y_t``."""
    return torch.einsum("t,tnc->nc", weights.to(y_seq.dtype), y_seq).argmax(-1)
