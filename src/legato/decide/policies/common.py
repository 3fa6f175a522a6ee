"""What the three learning policies share: parameter rules, input checks, state checks and the
ensemble choice that makes batched Thompson sampling's propensities exact (see the package
docstring)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict

from legato.decide.policy import BoolArray, PolicyParams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STATE_VERSION = 1


class _LearningParams(PolicyParams):
    # NaN or infinite parameters would silently poison every later decision.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------- input checks


def _features(features: Any, n_features: int | None) -> FloatArray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a customers × features matrix, got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"features have {x.shape[1]} columns but this policy was trained on {n_features}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values; features.feature_matrix maps missing values to 0")
    return x


def _feedback(
    x: FloatArray, actions: Any, rewards: Any, propensities: Any, n_actions: int
) -> tuple[IntArray, FloatArray]:
    n = x.shape[0]
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    for label, array in (("actions", a), ("rewards", r), ("propensities", p)):
        if array.shape != (n,):
            raise ValueError(f"{label} must have one entry per customer ({n}), got shape {array.shape}")
    if n and not np.issubdtype(a.dtype, np.integer) and not np.all(np.equal(np.mod(a, 1), 0)):
        raise ValueError("actions must be integer indices into the action space")
    a = a.astype(np.int64)
    if n and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions must lie in 0..{n_actions - 1}, got {a.min()}..{a.max()}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or infinite values")
    return a, r


def _check_n_actions(n_actions: int) -> None:
    if n_actions < 1:
        raise ValueError(f"a policy needs at least one action, got n_actions={n_actions}")


def _check_state(state: dict[str, Any], name: str) -> None:
    if state.get("policy") != name:
        raise ValueError(f"this state belongs to policy {state.get('policy')!r}, not {name!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported {name} state version {state.get('version')!r} (expected {STATE_VERSION})")


def _ensemble_choice(winners: IntArray, rng: np.random.Generator) -> tuple[IntArray, FloatArray]:
    """Each row follows one uniformly picked ensemble member; its propensity is the share of
    members that agree (see the package docstring for why this is exact)."""
    m, size = winners.shape
    member = rng.integers(0, size, size=m)
    chosen = winners[np.arange(m), member]
    propensity = np.count_nonzero(winners == chosen[:, None], axis=1) / size
    return chosen.astype(np.int64), propensity


def _mask_keys(mask: BoolArray) -> IntArray:
    """One integer per row, equal for rows with the same mask (any number of actions)."""
    packed = np.packbits(mask, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    inverse = np.unique(keys, return_inverse=True)[1]
    return inverse.reshape(-1).astype(np.int64)


def _groups(keys: IntArray) -> Iterator[tuple[int, IntArray]]:
    """(key, row indices) for every key present: one sort instead of one mask per key."""
    order = np.argsort(keys, kind="stable")
    present, starts = np.unique(keys[order], return_index=True)
    ends = np.append(starts[1:], keys.size)
    for key, start, stop in zip(present, starts, ends[: present.size], strict=True):
        yield int(key), order[start:stop]


# ------------------------------------------------------------------ a changed action space


def _check_source(source: Sequence[int | None], n_old: int) -> IntArray:
    """The new actions that continue an old one, as (new index, old index) rows; raises
    ValueError for an index outside the old space or one old action continued twice."""
    if not source:
        raise ValueError("a policy needs at least one action, got an empty action space")
    pairs = np.array([(new, old) for new, old in enumerate(source) if old is not None], dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs[:, 1].min() < 0 or pairs[:, 1].max() >= n_old):
        raise ValueError(f"old actions are 0..{n_old - 1}, got {pairs[:, 1].min()}..{pairs[:, 1].max()}")
    if np.unique(pairs[:, 1]).size != pairs.shape[0]:
        raise ValueError("one old action cannot continue as two new ones")
    return pairs


def _require_same_params(old: PolicyParams, new: PolicyParams, per_action: frozenset[str] = frozenset()) -> None:
    """The learned state was computed under ``old``; only the per-action parameters (which
    describe the actions, not the prior) may differ in ``new``."""
    before, after = old.model_dump(exclude=set(per_action)), new.model_dump(exclude=set(per_action))
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        raise ValueError(f"the policy parameters changed ({', '.join(changed)}); what was learned under the old ones does not carry over")
