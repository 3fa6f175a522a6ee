"""Offline benchmarks on real data: Hillstrom, Open Bandit Dataset, CDNOW, and decision throughput.

Each module exposes ``run_*`` returning a JSON-serialisable dict and ``render_table(result)``
returning a Rich table; ``legato bench NAME`` runs them. ``BENCHMARKS`` maps each name to
its (run, render_table) pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from legato.learn.bench import cdnow, hillstrom, obd, online, throughput
from legato.learn.bench.cdnow import run_cdnow
from legato.learn.bench.hillstrom import run_hillstrom
from legato.learn.bench.obd import run_obd
from legato.learn.bench.online import run_online
from legato.learn.bench.throughput import run_throughput

BENCHMARKS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], Table]]] = {
    "hillstrom": (run_hillstrom, hillstrom.render_table),
    "obd": (run_obd, obd.render_table),
    "cdnow": (run_cdnow, cdnow.render_table),
    "throughput": (run_throughput, throughput.render_table),
    "online": (run_online, online.render_table),
}

__all__ = ["BENCHMARKS", "run_cdnow", "run_hillstrom", "run_obd", "run_online", "run_throughput"]
