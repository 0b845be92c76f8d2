"""Online learners (FPTT, FPTT-dual, OTTT, SLTT/SLTT-K) and the BPTT baseline, as pure steps.

Every learner has ``init(params, states) -> carry``, ``step(carry, x, y, **options) -> (carry,
StepOutput)``, ``plan(carry, T)`` (which calls of ``step`` one sequence of T steps is made of: per
step, windows, the whole sequence), ``end_sequence(carry)`` and ``run(carry, x_seq, y_seq) -> (carry,
StepOutput)`` over time-major data, which is :func:`driver.run`: the one time loop, shared by every
learner, by :func:`purelearn.compile.run` and by evaluation (:func:`forward`).
"""

from . import driver
from .bptt import BPTT, BPTTCarry, bptt
from .checked import CheckFinite, NonFiniteLossError, check_finite
from .driver import Call, StepOutput
from .forward import Forward, ForwardCarry, forward
from .fptt import FPTT, FPTTCarry, fptt
from .fptt_dual import FPTTDual, FPTTDualCarry, fptt_dual
from .ottt import OTTT, OTTTCarry, ottt
from .sltt import SLTT, SLTTCarry, sltt

__all__ = [
    "driver", "StepOutput", "Call",
    "FPTT", "FPTTCarry", "fptt",
    "FPTTDual", "FPTTDualCarry", "fptt_dual",
    "OTTT", "OTTTCarry", "ottt",
    "SLTT", "SLTTCarry", "sltt",
    "BPTT", "BPTTCarry", "bptt",
    "Forward", "ForwardCarry", "forward",
    "CheckFinite", "NonFiniteLossError", "check_finite",
]
