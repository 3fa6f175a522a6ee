"""Alembic environment: migrations run on the engine Legato hands over, never on a URL in a file."""

from __future__ import annotations

from alembic import context

from legato.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a SQLite table (copy, drop, rename). With foreign keys on,
        # dropping `agents` or `decisions` would cascade-delete or refuse over the rows that
        # reference them. The pragma only takes effect outside a transaction, so it is set
        # before the migration's transaction begins, and the references are checked after.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # end SQLAlchemy's implicit transaction, so Alembic's own begins and commits
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"the migration left rows whose references are broken: {broken[:5]}")
