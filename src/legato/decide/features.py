"""The customer features every policy sees, in a fixed order.

Policies get a dense float matrix (customers × features); a missing value becomes 0 and a
constant column of ones is first, so linear policies need no separate intercept.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FEATURES: tuple[str, ...] = ("lifetime_spend", "purchase_count", "days_since_last_purchase", "purchases_90d")


def feature_matrix(columns: list[npt.NDArray[np.object_]]) -> npt.NDArray[np.float64]:
    n = len(columns[0]) if columns else 0
    matrix = np.ones((n, len(columns) + 1), dtype=np.float64)
    for index, column in enumerate(columns, start=1):
        values = np.asarray(column, dtype=object)
        values[values == None] = np.nan  # noqa: E711 - elementwise on objects
        matrix[:, index] = np.nan_to_num(values.astype(np.float64), nan=0.0)
    return matrix
