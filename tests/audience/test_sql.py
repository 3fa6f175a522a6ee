"""Compiled segment expressions run on real SQLite and PostgreSQL and select the right customers.

Every expected set of ids is computed independently in Python from the same rows, so a
wrong translation (operator, NULL handling, date arithmetic, rounding) fails the test.
PostgreSQL is required: if it does not answer the PostgreSQL half fails, unless
``LEGATO_TEST_SKIP_POSTGRES=1`` asks to skip it.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from legato.audience.expr import ExpressionError
from legato.audience.sql import Field, FieldType, check_expression, compile_expression, compile_value

POSTGRES_URL = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("attributes", sa.JSON, nullable=False),
)
traits = sa.Table(
    "traits",
    metadata,
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("lifetime_spend", sa.Float, nullable=True),
    sa.Column("orders", sa.Integer, nullable=False),
    sa.Column("last_purchase_at", sa.DateTime(timezone=True), nullable=True),
)


# ----------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Row:
    """One customer as Python sees it; None means the value is missing (SQL NULL)."""

    id: int
    country: str | None
    email: str
    newbie: bool
    mens: bool
    age: int | None
    has_traits: bool
    spend: float | None
    orders: int | None
    last: datetime | None

    @property
    def days_since_last(self) -> float | None:
        return None if self.last is None else (NOW - self.last).total_seconds() / 86400


def make_rows() -> list[Row]:
    countries = ["FR", "US", "CA", "us", None]
    rows = []
    for i in range(1, 21):
        has_traits = i != 20
        rows.append(
            Row(
                id=i,
                country=countries[i % 5],
                email=f"User{i}@Example.com",
                newbie=i % 3 == 0,
                mens=i % 2 == 0,
                age=None if i % 4 == 0 else 18 + 3 * i,
                has_traits=has_traits,
                spend=None if (i % 7 == 0 or not has_traits) else i * 17.5,
                orders=i % 6 if has_traits else None,
                # Microseconds check that julianday() reads SQLAlchemy's six fractional digits.
                last=None
                if (i % 6 == 0 or not has_traits)
                else NOW - timedelta(days=9 * i, hours=i, microseconds=250_000),
            )
        )
    return rows


ROWS = make_rows()


def attributes_of(row: Row) -> dict[str, object]:
    attributes: dict[str, object] = {"email": row.email, "newbie": row.newbie, "mens": row.mens}
    if row.country is not None:
        attributes["country"] = row.country
    if row.age is not None:
        attributes["age"] = row.age
    return attributes


FIELDS = {
    "country": Field(customers.c.attributes["country"].as_string(), FieldType.STRING),
    "email": Field(customers.c.attributes["email"].as_string(), FieldType.STRING),
    "newbie": Field(customers.c.attributes["newbie"].as_boolean(), FieldType.BOOLEAN),
    "mens": Field(customers.c.attributes["mens"].as_boolean(), FieldType.BOOLEAN),
    "age": Field(customers.c.attributes["age"].as_float(), FieldType.NUMBER),
    "lifetime_spend": Field(traits.c.lifetime_spend, FieldType.NUMBER),
    "orders": Field(traits.c.orders, FieldType.NUMBER),
    "last_purchase_at": Field(traits.c.last_purchase_at, FieldType.TIMESTAMP),
}

SEGMENTS = {
    "lapsed": "days_since(last_purchase_at) > 60",
    "big_spender": "lifetime_spend >= 100",
    "lapsed_big": "lapsed and big_spender",
    "cycle_a": "cycle_b or newbie",
    "cycle_b": "mens and cycle_c",
    "cycle_c": "cycle_a",
    "broken": "big_spender and country > 5",
    "deep": "lapsed_big",
}


class TestResolver:
    """Maps names to the test tables' columns; "now" is a bound UTC timestamp."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, segments: dict[str, str] | None = None) -> None:
        self.segments = SEGMENTS if segments is None else segments

    def field(self, name: str) -> Field | None:
        return FIELDS.get(name)

    def segment(self, name: str) -> str | None:
        return self.segments.get(name)

    def known_names(self) -> list[str]:
        return [*FIELDS, *self.segments]

    def now(self) -> sa.ColumnElement:  # type: ignore[type-arg]
        return sa.literal(NOW, sa.DateTime(timezone=True))


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """An engine with empty ``customers``/``traits`` tables; PostgreSQL uses a private schema."""
    if request.param == "sqlite":
        engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    if os.environ.get("LEGATO_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("LEGATO_TEST_SKIP_POSTGRES=1: PostgreSQL tests skipped on purpose")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    schema = f"legato_audience_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc.orig}); "
            "start it or set LEGATO_TEST_SKIP_POSTGRES=1 to skip these tests"
        )
    engine = sa.create_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def loaded(db_engine: sa.Engine) -> sa.Engine:
    with db_engine.begin() as connection:
        connection.execute(customers.insert(), [{"id": r.id, "attributes": attributes_of(r)} for r in ROWS])
        connection.execute(
            traits.insert(),
            [
                {"customer_id": r.id, "lifetime_spend": r.spend, "orders": r.orders, "last_purchase_at": r.last}
                for r in ROWS
                if r.has_traits
            ],
        )
    return db_engine


def matching_ids(engine: sa.Engine, source: str, resolver: TestResolver | None = None) -> set[int]:
    condition = compile_expression(source, resolver or TestResolver(), dialect_name=engine.dialect.name)
    query = (
        sa.select(customers.c.id)
        .select_from(customers.outerjoin(traits, traits.c.customer_id == customers.c.id))
        .where(condition)
    )
    with engine.connect() as connection:
        return set(connection.scalars(query))


def ids(predicate: Callable[[Row], bool]) -> set[int]:
    return {r.id for r in ROWS if predicate(r)}


def lapsed(r: Row) -> bool:
    days = r.days_since_last
    return days is not None and days > 60


def big_spender(r: Row) -> bool:
    return r.spend is not None and r.spend >= 100


def half_up(x: float) -> int:
    """SQL-style rounding (halves away from zero) for the positive values used here."""
    return math.floor(x + 0.5)


# Each case: expression, and the same condition in Python with SQL's NULL rules spelled out
# (a comparison with a missing value is never true, and neither is its negation).
CASES: list[tuple[str, Callable[[Row], bool]]] = [
    (
        'days_since(last_purchase_at) > 60 and lifetime_spend >= 100 and country in ("US", "CA")',
        lambda r: lapsed(r) and big_spender(r) and r.country in ("US", "CA"),
    ),
    ('country in ("US", "CA")', lambda r: r.country in ("US", "CA")),
    ("country not in ('US', 'CA')", lambda r: r.country is not None and r.country not in ("US", "CA")),
    ("country = 'US'", lambda r: r.country == "US"),
    ('country != "US"', lambda r: r.country is not None and r.country != "US"),
    ('lower(country) = "us"', lambda r: r.country is not None and r.country.lower() == "us"),
    ('upper(country) <> "US"', lambda r: r.country is not None and r.country.upper() != "US"),
    ("age between 30 and 45", lambda r: r.age is not None and 30 <= r.age <= 45),
    ("age not between 30 and 45", lambda r: r.age is not None and not 30 <= r.age <= 45),
    ("age between 27 and 33 and newbie", lambda r: r.age is not None and 27 <= r.age <= 33 and r.newbie),
    ("orders between 1 + 1 and 2 * 2 or mens", lambda r: (r.orders is not None and 2 <= r.orders <= 4) or r.mens),
    ("age is null", lambda r: r.age is None),
    ("last_purchase_at is not null", lambda r: r.last is not None),
    ("lifetime_spend is null and orders is not null", lambda r: r.spend is None and r.orders is not None),
    ("coalesce(lifetime_spend, 0) < 50", lambda r: (r.spend or 0) < 50),
    ("coalesce(age, orders, -1) = -1", lambda r: r.age is None and r.orders is None),
    ("length(email) > 20", lambda r: len(r.email) > 20),
    ('contains(email, "Example")', lambda r: True),
    ('contains(email, "example")', lambda r: False),
    ('contains(lower(email), "example") and contains(email, "1@")', lambda r: "1@" in r.email),
    ('starts_with(email, "User1")', lambda r: r.email.startswith("User1")),
    ("starts_with(email, 'user')", lambda r: False),
    ("abs(age - 50) <= 10", lambda r: r.age is not None and abs(r.age - 50) <= 10),
    ("round(lifetime_spend / 7) in (3, 8, 13)", lambda r: r.spend is not None and half_up(r.spend / 7) in (3, 8, 13)),
    ("age / 2 = 10.5", lambda r: r.age == 21),
    ("lifetime_spend / 0 > 1 or lifetime_spend / 0 is not null", lambda r: False),
    ("-lifetime_spend < -300", lambda r: r.spend is not None and -r.spend < -300),
    ("(lifetime_spend + 10) * 2 > 400", lambda r: r.spend is not None and (r.spend + 10) * 2 > 400),
    ("orders = 3 or orders == 5", lambda r: r.orders in (3, 5)),
    ("newbie and mens", lambda r: r.newbie and r.mens),
    ("newbie = false", lambda r: not r.newbie),
    ("not newbie or mens = true", lambda r: not r.newbie or r.mens),
    ("newbie != mens", lambda r: r.newbie != r.mens),
    ("not (age > 40)", lambda r: r.age is not None and not r.age > 40),
    ("true", lambda r: True),
    ("false or newbie", lambda r: r.newbie),
    ("days_since(last_purchase_at) > 60", lapsed),
    (
        "days_since(last_purchase_at) between 27 and 27.2",
        lambda r: r.last is not None and 27 <= r.days_since_last <= 27.2,  # type: ignore[operator]
    ),
    ('last_purchase_at >= "2024-03-01"', lambda r: r.last is not None and r.last >= datetime(2024, 3, 1, tzinfo=timezone.utc)),
    (
        'last_purchase_at < "2024-05-01T00:00:00Z"',
        lambda r: r.last is not None and r.last < datetime(2024, 5, 1, tzinfo=timezone.utc),
    ),
    (
        'last_purchase_at < "2024-04-30T20:00:00-04:00"',
        lambda r: r.last is not None and r.last < datetime(2024, 5, 1, tzinfo=timezone.utc),
    ),
    (
        'last_purchase_at between "2024-01-01" and "2024-04-01 00:00"',
        lambda r: r.last is not None
        and datetime(2024, 1, 1, tzinfo=timezone.utc) <= r.last <= datetime(2024, 4, 1, tzinfo=timezone.utc),
    ),
    ('coalesce(last_purchase_at, "2000-01-01") < "2001-01-01"', lambda r: r.last is None),
    ("lapsed", lapsed),
    ("not lapsed", lambda r: not lapsed(r)),
    ("lapsed_big or newbie", lambda r: (lapsed(r) and big_spender(r)) or r.newbie),
    ("deep and not big_spender", lambda r: False),
    ("lapsed = false and big_spender", lambda r: not lapsed(r) and big_spender(r)),
]


def test_cases_are_not_trivial() -> None:
    """Guard against a data change that makes most expected sets empty or everything."""
    sizes = [len(ids(predicate)) for _, predicate in CASES]
    assert sum(1 for size in sizes if 0 < size < len(ROWS)) >= len(CASES) - 8


@pytest.mark.parametrize(("source", "predicate"), CASES, ids=[source for source, _ in CASES])
def test_expression_selects_expected_customers(loaded: sa.Engine, source: str, predicate: Callable[[Row], bool]) -> None:
    assert matching_ids(loaded, source) == ids(predicate)


def test_julianday_reads_what_sqlalchemy_stores_and_binds() -> None:
    """SQLite keeps DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text; julianday() must parse it."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(customers.insert(), [{"id": 1, "attributes": {}}])
        connection.execute(traits.insert(), [{"customer_id": 1, "orders": 0, "last_purchase_at": ROWS[0].last}])
    unix_epoch_jd = 2440587.5
    with engine.connect() as connection:
        bound = connection.scalar(sa.select(sa.func.julianday(sa.literal(NOW, sa.DateTime(timezone=True)))))
        assert bound == pytest.approx(unix_epoch_jd + NOW.timestamp() / 86400, abs=1e-8)
        row = connection.execute(
            sa.text("select last_purchase_at, julianday(last_purchase_at) from traits where customer_id = 1")
        ).one()
    assert row[0] == "2024-05-23 10:59:59.750000"
    expected = ROWS[0].last
    assert expected is not None
    assert row[1] == pytest.approx(unix_epoch_jd + expected.timestamp() / 86400, abs=1e-8)
    engine.dispose()


def test_sqlite_compares_timestamps_as_instants_not_text() -> None:
    """ISO text with 'T' and 'Z' (e.g. from JSON) must compare by time, not character by character."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    metadata.create_all(engine)
    signups = {1: "2024-05-01T10:00:00Z", 2: "2024-05-01T13:00:00+00:00", 3: "2024-04-30T23:30:00-04:00"}
    with engine.begin() as connection:
        connection.execute(customers.insert(), [{"id": i, "attributes": {"signup": v}} for i, v in signups.items()])
    signup = Field(customers.c.attributes["signup"].as_string(), FieldType.TIMESTAMP)

    class SignupResolver(TestResolver):
        def field(self, name: str) -> Field | None:
            return signup if name == "signup" else None

    def matching(source: str) -> set[int]:
        condition = compile_expression(source, SignupResolver(), dialect_name="sqlite")
        with engine.connect() as connection:
            return set(connection.scalars(sa.select(customers.c.id).where(condition)))

    assert matching('signup < "2024-05-01 12:00"') == {1, 3}
    assert matching('signup > "2024-05-01 03:00"') == {1, 2, 3}
    assert matching('signup = "2024-05-01T03:30:00Z"') == {3}
    assert matching("days_since(signup) between 31 and 31.1") == {1}
    engine.dispose()


def test_days_since_is_fractional(loaded: sa.Engine) -> None:
    # Customer 1 last bought 9 days, 1 hour and 0.25 s ago: 9.0417 days.
    source = "days_since(last_purchase_at) > 9.04 and days_since(last_purchase_at) < 9.05"
    assert matching_ids(loaded, source) == {1}


def test_compile_value_returns_a_typed_field(loaded: sa.Engine) -> None:
    dialect = loaded.dialect.name
    value = compile_value("lifetime_spend / orders", TestResolver(), dialect_name=dialect)
    assert value.type is FieldType.NUMBER
    with loaded.connect() as connection:
        got = {row[0]: row[1] for row in connection.execute(sa.select(traits.c.customer_id, value.column))}
    for r in ROWS:
        if not r.has_traits:
            continue
        if r.spend is None or not r.orders:
            assert got[r.id] is None, r
        else:
            assert got[r.id] == pytest.approx(r.spend / r.orders)
    assert compile_value("lower(country)", TestResolver(), dialect_name=dialect).type is FieldType.STRING
    assert compile_value("lapsed", TestResolver(), dialect_name=dialect).type is FieldType.BOOLEAN
    with pytest.raises(ExpressionError, match="always null"):
        compile_value("null", TestResolver(), dialect_name=dialect)


def test_segment_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("cycle_a", TestResolver(), dialect_name="sqlite")
    error = info.value
    assert error.message == "in segment 'cycle_c': segment cycle: cycle_a -> cycle_b -> cycle_c -> cycle_a"
    assert error.source == "cycle_a"
    assert (error.start, error.end) == (0, 7)
    assert error.segment_path == ("cycle_a", "cycle_b", "cycle_c")


def test_self_reference_is_a_cycle() -> None:
    with pytest.raises(ExpressionError, match="segment cycle: me -> me"):
        compile_expression("me", TestResolver({"me": "newbie or me"}), dialect_name="postgresql")


def test_error_inside_segment_points_into_that_segment() -> None:
    source = "newbie or broken"
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, TestResolver(), dialect_name="sqlite")
    error = info.value
    assert error.message == "in segment 'broken': cannot compare string with number"
    assert error.source == SEGMENTS["broken"]
    assert SEGMENTS["broken"][error.start : error.end] == "country > 5"
    assert error.render().splitlines() == [
        "in segment 'broken': cannot compare string with number",
        "  big_spender and country > 5",
        "                  ^^^^^^^^^^^",
    ]


def test_segment_that_is_not_a_condition() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("x", TestResolver({"x": "lifetime_spend"}), dialect_name="sqlite")
    assert info.value.message == "in segment 'x': the expression must be a condition (true or false), but it is a number"


def test_name_that_is_both_field_and_segment() -> None:
    with pytest.raises(ExpressionError, match="'country' is both a field and a segment"):
        compile_expression("country", TestResolver({"country": "true"}), dialect_name="sqlite")


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unsupported dialect"):
        compile_expression("true", TestResolver(), dialect_name="mysql")


# ----------------------------------------------------------------------------- type errors


def compile_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, TestResolver(), dialect_name="sqlite")
    assert info.value.source == source
    return info.value


@pytest.mark.parametrize(
    ("source", "span", "message", "hint"),
    [
        ("country > 5", "country > 5", "cannot compare string with number", None),
        ('lifetime_spend = "100"', 'lifetime_spend = "100"', "cannot compare number with string", "remove the quotes"),
        (
            "lifetime_spend and true",
            "lifetime_spend",
            "'and' needs a condition (true or false), but this is a number",
            "compare it, e.g. 'lifetime_spend > 0'",
        ),
        ("newbie or country", "country", "'or' needs a condition (true or false), but this is a string", None),
        ("not age", "age", "'not' needs a condition (true or false), but this is a number", None),
        ("lifetime_spend", "lifetime_spend", "the expression must be a condition (true or false), but it is a number", None),
        ("lifetim_spend > 100", "lifetim_spend", "unknown field or segment 'lifetim_spend'", "did you mean 'lifetime_spend'?"),
        ("lapsd", "lapsd", "unknown field or segment 'lapsd'", "did you mean 'lapsed' or 'lapsed_big'?"),
        ("zzz > 1", "zzz", "unknown field or segment 'zzz'", None),
        ("lower(country, email) = 'x'", "lower(country, email)", "lower() takes 1 argument, got 2", None),
        ("contains(email) ", "contains(email)", "contains() takes 2 arguments, got 1", None),
        ("coalesce(age) > 1", "coalesce(age)", "coalesce() takes at least 2 arguments, got 1", None),
        ("days_since() > 1", "days_since()", "days_since() takes 1 argument, got 0", None),
        ("lowr(country) = 'us'", "lowr", "unknown function 'lowr' (known functions: abs, coalesce, contains, "
         "days_since, length, lower, round, starts_with, upper)", "did you mean 'lower'?"),
        ("lower(age) = 'x'", "age", "lower() needs a string, but this is a number", None),
        ("abs(country) > 1", "country", "abs() needs a number, but this is a string", None),
        ("days_since(age) > 1", "age", "days_since() needs a timestamp, but this is a number", None),
        ("country = null", "country = null", "cannot compare with null using '='", "use 'is null'"),
        ("null != age", "null != age", "cannot compare with null using '!='", "use 'is null'"),
        ("country in ('US', 1)", "1", "cannot compare string with number", None),
        ("country in ('US', null)", "null", "null cannot be in an 'in' list", "use 'is null'"),
        ("age between 1 and 'x'", "age between 1 and 'x'", "cannot compare number with string", None),
        ("newbie > false", "newbie > false", "'>' cannot order conditions (true/false)", None),
        ("newbie = 1", "newbie = 1", "cannot compare boolean with number", None),
        ("last_purchase_at > 5", "last_purchase_at > 5", "cannot compare timestamp with number", "days_since"),
        ("last_purchase_at > country", "last_purchase_at > country", "cannot compare timestamp with string", None),
        (
            'last_purchase_at > "2024-13-01"',
            '"2024-13-01"',
            "'2024-13-01' is not an ISO-8601 date or datetime",
            "2024-01-31",
        ),
        ('last_purchase_at in ("yesterday")', '"yesterday"', "'yesterday' is not an ISO-8601 date or datetime", None),
        ("country + 1 > 2", "country", "'+' needs a number, but this is a string", None),
        ("-country = 'x'", "country", "'-' needs a number, but this is a string", None),
        ("coalesce(age, 'x') > 1", "'x'", "cannot compare number with string", None),
        ("coalesce(null, null) is null", "coalesce(null, null)", "coalesce() needs at least one argument that is not null", None),
        ("age > 1 and (country)", "country", "'and' needs a condition (true or false), but this is a string", None),
    ],
)
def test_type_errors_point_at_the_offending_text(source: str, span: str, message: str, hint: str | None) -> None:
    error = compile_error(source)
    assert error.message == message
    assert source[error.start : error.end] == span
    if hint is None:
        return
    assert error.hint is not None and hint in error.hint


def test_rendered_type_error() -> None:
    error = compile_error("days_since(last_purchase_at) > 60 and country > 5")
    assert error.render() == (
        "cannot compare string with number\n"
        "  days_since(last_purchase_at) > 60 and country > 5\n"
        "                                        ^^^^^^^^^^^"
    )
    assert str(error) == "cannot compare string with number (at column 39)"


def test_unknown_field_render_has_hint() -> None:
    error = compile_error("lifetim_spend >= 100")
    assert error.render().splitlines() == [
        "unknown field or segment 'lifetim_spend'",
        "  lifetim_spend >= 100",
        "  ^^^^^^^^^^^^^",
        "hint: did you mean 'lifetime_spend'?",
    ]


def test_parse_errors_surface_from_compile() -> None:
    error = compile_error('country in ("US", )')
    assert (error.start, error.end) == (18, 19)


# ----------------------------------------------------------------------------- check_expression

NAMES = {
    "country": FieldType.STRING,
    "lifetime_spend": FieldType.NUMBER,
    "last_purchase_at": FieldType.TIMESTAMP,
    "newbie": FieldType.BOOLEAN,
}


def test_check_expression_accepts_valid_expressions() -> None:
    segments = {"lapsed": "days_since(last_purchase_at) > 60", "vip": "lapsed and lifetime_spend > 1000"}
    check_expression('vip or (newbie and country in ("US", "CA"))', NAMES, segments)
    check_expression('last_purchase_at >= "2024-01-01" and lower(country) = "us"', NAMES, {})


def test_check_expression_accepts_plain_string_types() -> None:
    check_expression("lifetime_spend > 1", {"lifetime_spend": "number"}, {})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("source", "segments", "message"),
    [
        ("lifetime_spnd > 1", {}, "unknown field or segment 'lifetime_spnd'"),
        ("country > 5", {}, "cannot compare string with number"),
        ("a", {"a": "b", "b": "a"}, "in segment 'b': segment cycle: a -> b -> a"),
        ("ok or bad", {"ok": "newbie", "bad": "newbie and"}, "in segment 'bad': expected a value, found the end of the expression"),
        ("lifetime_spend and newbie", {}, "'and' needs a condition (true or false), but this is a number"),
        ("x", {"x": "country"}, "in segment 'x': the expression must be a condition (true or false), but it is a string"),
    ],
)
def test_check_expression_rejects(source: str, segments: dict[str, str], message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        check_expression(source, NAMES, segments)
    assert info.value.message == message


def test_check_expression_unknown_name_hint_covers_segments() -> None:
    with pytest.raises(ExpressionError) as info:
        check_expression("lapsd", NAMES, {"lapsed": "newbie"})
    assert info.value.hint == "did you mean 'lapsed'?"
