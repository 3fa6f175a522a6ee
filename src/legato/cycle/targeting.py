"""Per agent and cycle: the uplift gate and the population's engagement hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from legato.cycle.report import AgentReport
from legato.decide.send_time import population_profile
from legato.decide.uplift_gate import UpliftGate, fit_gate
from legato.playbook.models import Agent, Playbook


@dataclass
class Targeting:
    """Per agent and cycle: the uplift gate, and the population's engagement hours for send times."""

    gate: UpliftGate | None
    population_hours: npt.NDArray[np.float64] | None

    @classmethod
    def prepare(cls, connection: Connection, playbook: Playbook, agent: Agent, now: datetime, report: AgentReport) -> Targeting:
        gate = None
        if agent.uplift_gate is not None:
            gate = fit_gate(connection, agent, playbook.objective(agent.objective), now, agent.uplift_gate)
            report.uplift_gate = {"open": gate.is_open, "reason": gate.reason, "treated": gate.treated, "holdout": gate.control, "gated": 0}
        population = population_profile(connection, now, agent.send_time) if agent.send_time.mode == "learned" else None
        return cls(gate, population)
