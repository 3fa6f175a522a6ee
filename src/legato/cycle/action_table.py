"""Per-action facts as arrays, including each variant's content verdict, rendered once per cycle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from legato.decide.actions import Action
from legato.guard.contact import ContactFacts, unreachable_reasons
from legato.guard.message import MessageCheck, MessageChecker
from legato.playbook.models import Playbook


class ActionTable:
    """Per-action facts as arrays, so a batch's actions index them without a loop."""

    def __init__(self, playbook: Playbook, actions: list[Action]) -> None:
        self.actions = actions
        self.keys = np.array([a.key for a in actions], dtype=object)
        self.channel = np.array([a.channel for a in actions], dtype=object)
        self.marketing = np.array([a.is_nothing or playbook.creative(a.creative_id).purpose == "marketing" for a in actions])
        self.tags = [tuple(playbook.creative(a.creative_id).tags) if a.creative_id else () for a in actions]
        self.approved_template = np.array([bool(a.creative_id) and playbook.creative(a.creative_id).approved_template for a in actions])
        self.creative = np.array([a.creative_id for a in actions], dtype=object)
        self.offer = np.array([a.offer_id for a in actions], dtype=object)
        costs = {o.id: o.cost for o in playbook.offers}
        values = {o.id: o.value for o in playbook.offers}
        self.offer_cost = np.array([costs.get(a.offer_id, 0.0) if a.offer_id else 0.0 for a in actions])
        self.offer_value = np.array([values.get(a.offer_id, 0.0) if a.offer_id else 0.0 for a in actions])
        self.windows = [w for a in actions if a.window for w in [a.window]]
        unique_windows = list(dict.fromkeys(w for w in self.windows))
        self.unique_windows = unique_windows
        self.window_index = np.array([unique_windows.index(a.window) if a.window else 0 for a in actions], dtype=np.int64)
        # Each variant through the one check of a message (rendered once for everybody; the
        # dispatcher checks what each customer's copy adds), bound to its content hash.
        checker = MessageChecker(playbook)
        variants = [checker.variant(a.creative_id, a.offer_id) if a.creative_id else None for a in actions]
        self.content_hash = np.array([v.content_hash if v is not None else None for v in variants], dtype=object)
        checks: list[MessageCheck | None] = [checker.check(v) if v is not None else None for v in variants]
        self.nothing_index = next((i for i, a in enumerate(actions) if a.is_nothing), None)
        self.send_actions = np.array([not a.is_nothing for a in actions])
        self.marketing_any = bool((self.marketing & self.send_actions).any())
        self.content_block = np.array([c is not None and c.verdict == "block" for c in checks])
        self.content_escalate = np.array([c is not None and c.verdict == "escalate" for c in checks])
        self.content_rule = np.array([c.worst_rule if c is not None else None for c in checks], dtype=object)


    def _kind(self, k: int) -> tuple[str, bool, bool]:
        """What decides whether a customer can receive action ``k``: channel, marketing?, approved template?"""
        return (str(self.channel[k]), bool(self.marketing[k]), bool(self.approved_template[k]))

    def standing(self, facts: ContactFacts, n: int) -> dict[tuple[str, bool, bool], npt.NDArray[np.object_]]:
        """Why each customer cannot receive each kind of send in the action space."""
        kinds = sorted({self._kind(k) for k in np.flatnonzero(self.send_actions).tolist()})
        return {
            kind: unreachable_reasons(facts, kind[0], np.full(n, kind[1]), np.full(n, kind[2])) for kind in kinds
        }

    def reachable(self, standing: dict[tuple[str, bool, bool], npt.NDArray[np.object_]], n: int) -> npt.NDArray[np.bool_]:
        """customers × actions: may the customer receive the action at all now? "Do nothing" always."""
        reach = np.ones((n, len(self.actions)), dtype=bool)
        for k in np.flatnonzero(self.send_actions).tolist():
            reach[:, k] = standing[self._kind(k)] == None  # noqa: E711
        return reach

    @staticmethod
    def unreachable_reasons(standing: dict[tuple[str, bool, bool], npt.NDArray[np.object_]], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """For customers who can receive none of the channels: each distinct reason once, joined with '+'."""
        columns = [reasons[rows].tolist() for reasons in standing.values()]
        return np.array(["+".join(dict.fromkeys(r for r in found if r is not None)) for found in zip(*columns, strict=True)] or [], dtype=object)
