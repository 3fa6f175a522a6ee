"""The four kinds of error a caller can map (HTTP status, exit code) without reading the text."""

from __future__ import annotations

import pytest

from legato.errors import Conflict, Forbidden, Invalid, LegatoError, NotFound, StoreError, kind_of
from legato.trust.review import ReviewConflict, ReviewError, ReviewForbidden, ReviewInvalid, ReviewNotFound
from legato.trust.track_record import TrustConflict, TrustError, TrustInvalid, TrustNotFound


def test_each_kind_has_its_own_exit_code() -> None:
    codes = {kind: kind("x").exit_code for kind in (Invalid, NotFound, Conflict, Forbidden, StoreError)}
    assert len(set(codes.values())) == len(codes), codes
    assert LegatoError("x").exit_code == Invalid("x").exit_code == 2  # a plain user error is invalid input
    assert 0 not in codes.values() and 1 not in codes.values()  # 0 ok, 1 "partly done"


@pytest.mark.parametrize(
    ("error", "kind", "base"),
    [
        (ReviewInvalid("x"), "invalid", ReviewError),
        (ReviewNotFound("x"), "not_found", ReviewError),
        (ReviewConflict("x"), "conflict", ReviewError),
        (ReviewForbidden("x"), "forbidden", ReviewError),
        (TrustInvalid("x"), "invalid", TrustError),
        (TrustNotFound("x"), "not_found", TrustError),
        (TrustConflict("x"), "conflict", TrustError),
        (StoreError("x"), "store", LegatoError),
        (LegatoError("x"), "invalid", LegatoError),
    ],
)
def test_a_module_error_is_also_its_kind(error: LegatoError, kind: str, base: type) -> None:
    assert isinstance(error, base) and kind_of(error) == kind
    expected = {"invalid": 2, "not_found": 3, "conflict": 4, "forbidden": 5, "store": 6}[kind]
    assert error.exit_code == expected
