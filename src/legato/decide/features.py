"""The features a policy sees: the agent's chosen fields as a dense matrix.

Policies get customers × (1 + features); a missing value becomes 0 and a constant column of
ones is first, so linear policies need no separate intercept. Values are bounded to
±:data:`FEATURE_LIMIT` (infinity included): linear policies square and sum them, and a
value of 1e200 would overflow to infinity and NaN. Which fields an agent uses is
set in the playbook (``agents[].features``); they are stored with each decision as float32 so
the learning loop sees what the policy saw.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FEATURE_LIMIT = 1e9  # squares of 1e18 still sum exactly enough in float64


def feature_matrix(columns: list[npt.NDArray[np.object_]], n: int) -> npt.NDArray[np.float64]:
    matrix = np.ones((n, len(columns) + 1), dtype=np.float64)
    for index, column in enumerate(columns, start=1):
        values = np.asarray(column, dtype=object)
        values[values == None] = np.nan  # noqa: E711 - elementwise on objects
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=FEATURE_LIMIT, neginf=-FEATURE_LIMIT)
        matrix[:, index] = np.clip(finite, -FEATURE_LIMIT, FEATURE_LIMIT)
    return matrix


def encode_context(matrix: npt.NDArray[np.float64]) -> list[bytes]:
    """One compact blob per row, for the decisions table."""
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    return [row.tobytes() for row in rows]


def decode_context(blobs: list[bytes], n_columns: int) -> npt.NDArray[np.float64]:
    if not blobs:
        return np.zeros((0, n_columns))
    joined = np.frombuffer(b"".join(blobs), dtype=np.float32)
    if joined.size != len(blobs) * n_columns:
        raise ValueError(f"stored contexts do not have {n_columns} features each; the agent's features changed")
    return joined.reshape(len(blobs), n_columns).astype(np.float64)


def encode_allowed(mask: npt.NDArray[np.bool_], keep: npt.NDArray[np.bool_]) -> list[bytes | None]:
    """Per row, the allowed actions as packed bits (little-endian), or None where every action
    was allowed or the row was not decided by the policy (``keep`` False)."""
    packed = np.packbits(mask, axis=1, bitorder="little")
    restricted = keep & ~mask.all(axis=1)
    return [row.tobytes() if r else None for row, r in zip(packed, restricted.tolist(), strict=True)]


def decode_allowed(blobs: list[bytes | None], n_actions: int) -> npt.NDArray[np.bool_] | None:
    """The customers × actions mask from :func:`encode_allowed` blobs, or None when all are None.

    A blob of another length comes from another action space: its row counts as all allowed.
    """
    if all(b is None for b in blobs):
        return None
    width = (n_actions + 7) // 8
    mask = np.ones((len(blobs), n_actions), dtype=bool)
    for i, blob in enumerate(blobs):
        if blob is not None and len(blob) == width:
            mask[i] = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n_actions, bitorder="little").astype(bool)
    return mask
