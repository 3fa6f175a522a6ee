"""What the offline benchmarks share: finding their data files (compressed or not) and formatting numbers."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

from legato.datasets import locate
from legato.errors import LegatoError

P = ParamSpec("P")
R = TypeVar("R")


def small_models() -> threadpool_limits:
    """One OpenMP thread for the gradient boosting in the benchmarks.

    Their data sets are small (at most 64,000 rows), where threads add little; and when the
    cores are shared with other work, OpenMP's barriers stall on the busy core and made
    fits an order of magnitude slower in our measurements.
    """
    return threadpool_limits(limits=1, user_api="openmp")


def with_small_models(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` under :func:`small_models`."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with small_models():
            return function(*args, **kwargs)

    return wrapper


def find_file(given: Path, names: Sequence[str], what: str, hint: str) -> Path:
    """``given`` itself if it is a file, else the first of ``names`` inside it.

    Each name is found as written or compressed (``.xz``, ``.gz``; see :func:`legato.datasets.locate`).
    The error names every path tried, so a wrong ``--data`` is fixed at the first attempt.
    """
    if not given.is_dir() and (found := locate(given)) is not None:
        return found
    candidates = [given / name for name in names]
    for candidate in candidates:
        found = locate(candidate)
        if found is not None:
            return found
    tried = ", ".join(str(candidate) for candidate in candidates) if given.is_dir() else str(given)
    raise LegatoError(f"{what} not found: {tried}", hint=hint)


def require_file(path: Path, what: str, hint: str) -> Path:
    """``path``, or its compressed copy (``.xz``, ``.gz``) beside it; a :class:`LegatoError` naming it if neither is there."""
    found = locate(path)
    if found is None:
        raise LegatoError(f"{what} is missing: {path}", hint=hint)
    return found


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"
