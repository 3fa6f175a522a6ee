"""The packaged data: every file its provenance lists is there, unchanged, and nothing else ships."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

from legato.datasets import CDNOW, HILLSTROM, OBD, locate, open_binary, open_text, shipped, shipped_file
from legato.errors import LegatoError

ROW = re.compile(r"^\| (\S+) \| ([0-9a-f]{64}) \|$")


def listed() -> dict[str, str]:
    """file → sha256 of its uncompressed content, from the table in PROVENANCE.md."""
    text = (shipped() / "PROVENANCE.md").read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := ROW.match(line))}


def test_every_listed_file_is_there_with_its_checksum() -> None:
    files = listed()
    assert len(files) == 7
    for name, digest in files.items():
        with open_binary(shipped() / name) as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest, name


def test_nothing_ships_that_the_provenance_does_not_list() -> None:
    present = {
        path.relative_to(shipped()).as_posix()
        for path in shipped().rglob("*")
        if path.is_file() and path.name != "PROVENANCE.md" and "__pycache__" not in path.parts
    }
    assert present == set(listed())


def test_the_readers_names_find_the_compressed_copies() -> None:
    assert shipped_file(HILLSTROM).name == "hillstrom.csv.gz"
    assert shipped_file(CDNOW).name == "CDNOW_master.txt.xz"
    assert shipped_file(f"{OBD}/random/all/all.csv").name == "all.csv.xz"
    assert shipped_file(f"{OBD}/prior_bts.yaml").name == "prior_bts.yaml"  # small: kept as published
    with open_text(shipped_file(CDNOW), encoding="ascii") as handle:
        assert handle.readline().split() == ["customer_id", "date", "number_of_cds", "dollar_value"]
        assert handle.readline().split() == ["00001", "19970101", "1", "11.77"]


def test_a_plain_file_wins_over_a_compressed_one_and_either_reads_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "rows.csv"
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert locate(plain) == tmp_path / "rows.csv.gz"
    with open_binary(tmp_path / "rows.csv.gz") as handle:
        assert handle.read() == b"a,b\n1,2\n"
    plain.write_bytes(b"a,b\n3,4\n")
    assert locate(plain) == plain
    assert locate(tmp_path / "other.csv") is None


def test_a_missing_packaged_file_is_named_with_a_fix() -> None:
    with pytest.raises(LegatoError, match="nothing.csv is missing") as caught:
        shipped_file("nothing.csv")
    assert caught.value.hint and "reinstall" in caught.value.hint
