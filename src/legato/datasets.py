"""The real data sets that ship inside the package, and how to open one, compressed or not.

``legato/data/`` holds the Hillstrom e-mail experiment, the Open Bandit Dataset sample and
the CDNOW purchase panel, each compressed (``.gz`` or ``.xz``), with their sources, terms and
checksums in ``legato/data/PROVENANCE.md``. Users do not have the folder the copies came
from, so the demo, ``legato bench`` and the tests read these.

A file is named by its uncompressed name (``obd/random/all/all.csv``); :func:`locate` finds
it as written or with a compression suffix, so a folder given with ``--data`` may hold
either form.
"""

from __future__ import annotations

import gzip
import io
import lzma
from importlib.resources import files
from pathlib import Path
from typing import IO

from legato.errors import LegatoError

COMPRESSIONS = (".xz", ".gz")

HILLSTROM = "hillstrom.csv"
OBD = "obd"
CDNOW = "cdnow/CDNOW_master.txt"


def shipped(name: str = "") -> Path:
    """The path of a shipped file or folder, by its uncompressed name ("" is the data folder)."""
    folder = Path(str(files("legato").joinpath("data")))
    return folder / name if name else folder


def shipped_file(name: str) -> Path:
    """The shipped file named ``name`` (uncompressed name), as it is stored."""
    found = locate(shipped(name))
    if found is None:
        raise LegatoError(
            f"the packaged data file {name} is missing from {shipped()}",
            hint="reinstall legato (pip install --force-reinstall legato): its data folder is incomplete",
        )
    return found


def locate(path: Path) -> Path | None:
    """``path`` itself if it is a file, else the first compressed copy of it beside it, else None."""
    if path.is_file():
        return path
    for suffix in COMPRESSIONS:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def open_binary(path: Path) -> IO[bytes]:
    """A file's bytes, decompressed when its name ends in ``.xz`` or ``.gz``."""
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """A file's text, decompressed like :func:`open_binary`."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding)
