"""One orchestration cycle. ``run.py`` is the only module that knows the order of the steps;
each other module is one step or the facts a step needs."""

from legato.cycle.report import AgentReport, CycleReport
from legato.cycle.run import run_cycle

__all__ = ["AgentReport", "CycleReport", "run_cycle"]
