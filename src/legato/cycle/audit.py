"""The cycle's entries in the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import audit_log


def audit(connection: Connection, at: datetime, actor: str, action: str, entity: str, entity_id: str, detail: dict[str, Any]) -> None:
    connection.execute(
        sa.insert(audit_log).values(at=at, actor=actor, action=action, entity=entity, entity_id=entity_id, detail=detail)
    )
