"""consent history: when each statement was made; addresses and numbers in one form

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 13:00:00

A consent statement now carries when the customer made it (``stated_at``: the file's consent
date, the reply's or event's time; NULL when the source did not say), so the latest
statement wins and only an express consent dated after a revocation undoes it
(legato.guard.consent.change). Statements on file before this revision have no such date
(their ``recorded_at`` is the file's date when it gave one, else the import's time): a
revocation among them stands from its ``recorded_at``, a grant among them counts as undated.

Implied consents no longer carry the expiry the importer computed: the consent rule applies
the lifetime (730 days or the playbook's) from when the consent was given.

Phone numbers on customers and on the suppression list are rewritten in E.164 and e-mail
addresses trimmed and lower-cased, the one form of legato.channels (a number that cannot be
read is left as it was). The suppression list gains the kind ``undeliverable`` (a hard
bounce); its kind column has no CHECK, so no constraint changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('consents', sa.Column('stated_at', legato.store.types.UTCDateTime(), nullable=True))
    op.execute("UPDATE consents SET expires_at = NULL WHERE kind = 'implied'")
    op.execute("UPDATE customers SET email = lower(trim(email)) WHERE email IS NOT NULL AND email <> lower(trim(email))")
    _phones_in_one_form()


def _phones_in_one_form() -> None:
    from legato.channels import contact_or_none

    bind = op.get_bind()
    customers = sa.table('customers', sa.column('id'), sa.column('phone'), sa.column('country'))
    rows = bind.execute(sa.select(customers.c.id, customers.c.phone, customers.c.country).where(customers.c.phone.is_not(None))).all()
    changed = []
    for row in rows:
        formed = contact_or_none('phone', row.phone, row.country)
        if formed is not None and formed != row.phone:
            changed.append({'key': row.id, 'formed': formed})
    if changed:
        bind.execute(sa.update(customers).where(customers.c.id == sa.bindparam('key')).values(phone=sa.bindparam('formed')), changed)
    listed = sa.table('suppressions', sa.column('kind'), sa.column('value'))
    values = set(bind.execute(sa.select(listed.c.value).where(listed.c.kind == 'phone')).scalars())
    for value in sorted(values):
        formed = contact_or_none('phone', value)
        if formed is None or formed == value:
            continue
        where = (listed.c.kind == 'phone') & (listed.c.value == value)
        if formed in values:
            bind.execute(sa.delete(listed).where(where))
        else:
            bind.execute(sa.update(listed).where(where).values(value=formed))
            values.add(formed)


def downgrade() -> None:
    op.execute("DELETE FROM suppressions WHERE kind = 'undeliverable'")
    with op.batch_alter_table('consents') as batch:
        batch.drop_column('stated_at')
