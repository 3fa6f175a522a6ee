"""The trust ladder: how much an agent may do alone, from stage 0 (Manual) to 3 (Autonomous).

This module routes a batch of allowed decisions to "scheduled" or "queued" by the agent's
stage. Stage 0 sends nothing without a person's approval; stages 1 to 3 schedule what the
guardrails allowed. Approval memory for stage 1, audit samples for stage 2 and escalation
rules refine this routing as they are built (see docs/architecture.md).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import numpy.typing as npt

from legato.store.status import Route

# The two routes a send can take; their spelling is the decision status they start in.
EXECUTE = Route.SCHEDULED
REVIEW = Route.QUEUED


class Stage(IntEnum):
    MANUAL = 0
    ASSISTED = 1
    SUPERVISED = 2
    AUTONOMOUS = 3


def route(stage: int, sends: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
    """Route for each proposed send; rows that are not sends get None."""
    routes = np.full(len(sends), None, dtype=object)
    routes[sends] = REVIEW if Stage(stage) == Stage.MANUAL else EXECUTE
    return routes
