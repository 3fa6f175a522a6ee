"""An agent's action space: every (creative, offer, send window) it may choose, plus doing nothing.

The channel comes with the creative, so creatives × offers × windows is the whole space.
Actions are indexed 0..K-1 so that policies work on integer arrays; index 0 is "do nothing"
when the playbook allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from legato.playbook.models import Agent, Playbook, SendWindow

NOTHING = "nothing"


@dataclass(frozen=True)
class Action:
    creative_id: str | None
    offer_id: str | None
    channel: str | None
    window: SendWindow | None

    @property
    def is_nothing(self) -> bool:
        return self.creative_id is None

    @property
    def key(self) -> str:
        """A stable name, stored on every decision: ``creative/offer/window`` or ``nothing``."""
        if self.is_nothing:
            return NOTHING
        assert self.window is not None
        return f"{self.creative_id}/{self.offer_id or 'no_offer'}/{self.window.label}"


def action_space(playbook: Playbook, agent: Agent) -> list[Action]:
    return _actions(agent, lambda creative_id: playbook.creative(creative_id).channel.value)


def action_keys(agent: Agent) -> list[str]:
    """The keys of :func:`action_space`, in its order, without looking the creatives up (so a
    playbook whose references are still being checked can be asked)."""
    return [action.key for action in _actions(agent, lambda creative_id: None)]


def _actions(agent: Agent, channel_of: Callable[[str], str | None]) -> list[Action]:
    actions: list[Action] = []
    if agent.actions.do_nothing:
        actions.append(Action(None, None, None, None))
    offers: list[str | None] = list(agent.actions.offers) or [None]
    for creative_id in agent.actions.creatives:
        channel = channel_of(creative_id)
        for offer_id in offers:
            for window in agent.actions.send_windows:
                actions.append(Action(creative_id, offer_id, channel, window))
    return actions
