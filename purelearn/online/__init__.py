"""Online learners (FPTT, FPTT-dual, OTTT, SLTT/SLTT-K) and the BPTT baseline, as pure steps.

Every learner has ``init(params, states) -> carry``, ``step(carry, x_t, y_t, last=False) ->
(carry, StepOutput)`` and ``run(carry, x_seq, y_seq) -> (carry, StepOutput)`` over time-major
data; ``run`` returns a carry ready for the next sequence.
"""

from ._base import StepOutput
from .bptt import BPTT, BPTTCarry, bptt
from .checked import CheckFinite, NonFiniteLossError, check_finite
from .fptt import FPTT, FPTTCarry, fptt
from .fptt_dual import FPTTDual, FPTTDualCarry, fptt_dual
from .ottt import OTTT, OTTTCarry, ottt
from .sltt import SLTT, SLTTCarry, sltt

__all__ = [
    "StepOutput",
    "FPTT", "FPTTCarry", "fptt",
    "FPTTDual", "FPTTDualCarry", "fptt_dual",
    "OTTT", "OTTTCarry", "ottt",
    "SLTT", "SLTTCarry", "sltt",
    "BPTT", "BPTTCarry", "bptt",
    "CheckFinite", "NonFiniteLossError", "check_finite",
]
