"""The review queue over real HTTP, on SQLite and PostgreSQL: items a real stage-0 cycle queued,
listed with totals, filters and pages by cursor; shown with the message, its hash and why this
customer; approved with the hash the reviewer saw (a stale one is 409), edited, rejected,
escalated, withdrawn, and acted on in bulk; each action under the key's name in the audit log,
and only by a role that may review."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.schema import audit_log, decisions, outbox, review_items
from tests.api.conftest import Served
from tests.world import AT, expected_eligible, load_customers, playbook

N = 40
UNSUBSCRIBE = "Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"


def queue(engine: Engine, tmp_path: Path, n: int = N) -> int:
    """n customers and one real cycle at AT with the agent at stage 0: every proposal waits for a person."""
    load_customers(engine, n)
    pb = playbook(stage=0)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(review_items)).scalar_one())


def first(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get("/v1/review/items", params={"limit": 1, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"][0]


def audit(engine: Engine, action: str) -> list[tuple[str, str]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(audit_log.c.actor, audit_log.c.entity_id).where(audit_log.c.action == action).order_by(audit_log.c.id))]


def test_the_list_has_the_total_and_pages_by_cursor_without_gaps_or_repeats(served: Served, tmp_path: Path) -> None:
    total = queue(served.engine, tmp_path)
    assert total == len(expected_eligible(N)) > 14
    seen: list[int] = []
    pages = 0
    with served.client("viewer") as client:
        after: str | None = None
        while True:
            answer = client.get("/v1/review/items", params={"limit": 7, **({"after": after} if after else {})})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            assert page["total"] == total  # the filter's total on every page, not the page's length
            seen += [item["id"] for item in page["items"]]
            pages += 1
            after = page["next_cursor"]
            if after is None:
                break
    assert pages == -(-total // 7)
    assert len(seen) == total and len(set(seen)) == total
    with served.engine.connect() as c:
        assert set(seen) == set(c.execute(sa.select(review_items.c.id)).scalars())
    items = page["items"]
    assert {item["status"] for item in items} == {"open"} and {item["kind"] for item in items} == {"decision"}
    assert items[0]["agent_id"] == "mailer" and items[0]["reason"] == "trust_stage_0" and items[0]["content_hash"]


def test_a_page_cursor_is_stable_while_items_are_decided(served: Served, tmp_path: Path) -> None:
    total = queue(served.engine, tmp_path)
    with served.client("reviewer") as client:
        one = client.get("/v1/review/items", params={"limit": 5}).json()
        # Items of the first page are approved between the reader's pages: the next page neither skips nor repeats.
        for item in one["items"]:
            assert client.post(f"/v1/review/items/{item['id']}/approve", json={"content_hash": item["content_hash"]}).status_code == 200
        rest = client.get("/v1/review/items", params={"limit": 1000, "after": one["next_cursor"]}).json()
    assert rest["total"] == total - 5
    assert len(rest["items"]) == total - 5 and not {i["id"] for i in rest["items"]} & {i["id"] for i in one["items"]}


def test_filters(served: Served, tmp_path: Path) -> None:
    total = queue(served.engine, tmp_path)
    with served.client("viewer") as client:
        def count(**params: Any) -> int:
            answer = client.get("/v1/review/items", params={"limit": 1, **params})
            assert answer.status_code == 200, answer.text
            return int(answer.json()["total"])

        variant = first(client)["content_hash"]
        assert count(agent="mailer") == total and count(agent="nobody") == 0
        assert count(reason="trust_stage_0") == total and count(reason="trust") == 0  # a family is the part before ":"
        assert count(kind="decision") == total and count(kind="conversation") == 0
        assert count(variant=variant) == total and count(variant="0" * 64) == 0
        assert count(min_priority=50) == total and count(min_priority=51) == 0
        assert count(status="approved") == 0 and count(status="all") == total
        assert count(older_than_hours=1) == 0  # the server's clock is AT, when the cycle queued them
        served.clock.set(AT + timedelta(hours=2))
        assert count(older_than_hours=1) == total
        bad = client.get("/v1/review/items", params={"status": "maybe", "limit": 0})
        cursor = client.get("/v1/review/items", params={"after": "nonsense"})
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["error"]["problems"]} == {"query.status", "query.limit"}
    assert cursor.status_code == 422 and "is not a page cursor" in cursor.json()["error"]["message"]


def test_show_is_the_message_as_it_would_go_out_with_its_hash_and_why_this_customer(served: Served, tmp_path: Path) -> None:
    queue(served.engine, tmp_path)
    with served.client("viewer") as client:
        listed = first(client)
        answer = client.get(f"/v1/review/items/{listed['id']}")
        missing = client.get("/v1/review/items/999999")
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    customer = listed["customer_id"]
    assert shown["content_hash"] == listed["content_hash"]
    assert shown["content"]["subject"] == "Hi gold" and f"Hello {customer}." in shown["content"]["body"]
    assert shown["why"] == {"audience": 'tier in ("gold", "silver")', "facts": {"tier": "gold"}, "escalation": None}
    decision = shown["decision"]
    assert decision["customer_id"] == customer and decision["route"] == "queued" and decision["status"] == "queued"
    assert decision["creative_id"] == "hello" and decision["channel"] == "email" and decision["holdout"] is False
    assert shown["standing"] is None and shown["matches_playbook"] is True and shown["findings"] == []
    assert missing.status_code == 404 and missing.json()["error"]["kind"] == "not_found"


def test_approve_takes_the_hash_seen_a_stale_one_is_409_and_the_actor_is_the_key_name(served: Served, tmp_path: Path) -> None:
    queue(served.engine, tmp_path)
    with served.client("reviewer") as client:
        item = first(client)
        path = f"/v1/review/items/{item['id']}"
        stale = client.post(f"{path}/approve", json={"content_hash": "0" * 64})
        unnamed = client.post(f"{path}/approve", json={})
        smuggled = client.post(f"{path}/approve", json={"content_hash": item["content_hash"], "reviewer": "someone else"})
        approved = client.post(f"{path}/approve", json={"content_hash": item["content_hash"]})
        again = client.post(f"{path}/approve", json={"content_hash": item["content_hash"]})
    assert stale.status_code == 409 and stale.json()["error"]["kind"] == "conflict"
    assert "content changed since you looked" in stale.json()["error"]["message"]
    assert unnamed.status_code == 422 and unnamed.json()["error"]["problems"][0]["field"] == "body.content_hash"
    assert smuggled.status_code == 422  # who approves is the key, never a field
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["item"]["status"] == "approved" and body["item"]["decided_by"] == "reviewer-key" and body["unlocked"] is None
    assert again.status_code == 409
    assert audit(served.engine, "review_approved") == [("reviewer-key", str(item["id"]))]
    with served.engine.connect() as c:
        decision = c.execute(sa.select(decisions.c.status, decisions.c.approved_by).where(decisions.c.id == item["decision_id"])).one()
        scheduled = c.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == item["decision_id"])).scalar_one()
    assert tuple(decision) == ("scheduled", "reviewer-key") and scheduled == "pending"


def test_only_a_role_that_reviews_may_act_and_every_reader_may_read(served: Served, tmp_path: Path) -> None:
    queue(served.engine, tmp_path)
    with served.client("viewer") as viewer:
        item = first(viewer)
        refused = viewer.post(f"/v1/review/items/{item['id']}/approve", json={"content_hash": item["content_hash"]})
        bulk = viewer.post("/v1/review/approve-all", json={"agent": "mailer"})
    assert refused.status_code == 403 and refused.json()["error"]["kind"] == "forbidden"
    assert bulk.status_code == 403
    with served.client("marketer") as marketer:
        assert marketer.post(f"/v1/review/items/{item['id']}/reject", json={"reason": "off_brand"}).status_code == 403
        assert marketer.get(f"/v1/review/items/{item['id']}").status_code == 200
    with served.client("ingest") as ingest:
        assert ingest.get("/v1/review/items").status_code == 403
    with served.client(None) as nobody:
        assert nobody.get("/v1/review/items").status_code == 401
    with served.engine.connect() as c:
        assert c.execute(sa.select(review_items.c.status).where(review_items.c.id == item["id"])).scalar_one() == "open"
    with served.client("admin") as admin:
        assert admin.post(f"/v1/review/items/{item['id']}/reject", json={"reason": "off_brand"}).status_code == 200
    assert audit(served.engine, "review_rejected") == [("admin-key", str(item["id"]))]


def test_an_edit_changes_the_hash_so_the_old_one_is_409_and_the_editor_may_not_approve_it(served: Served, tmp_path: Path) -> None:
    queue(served.engine, tmp_path)
    with served.client("reviewer") as client:
        item = first(client)
        path = f"/v1/review/items/{item['id']}"
        edited = client.post(f"{path}/edit", json={"body": "Hello {{ customer.id }}, a gift for you. " + UNSUBSCRIBE})
        assert edited.status_code == 200, edited.text
        new_hash = edited.json()["item"]["content_hash"]
        old = client.post(f"{path}/approve", json={"content_hash": item["content_hash"]})
        own = client.post(f"{path}/approve", json={"content_hash": new_hash})
        shown = client.get(path).json()
        blocked = client.post(f"{path}/edit", json={})
    assert new_hash != item["content_hash"] and edited.json()["item"]["edited"] is True
    assert old.status_code == 409
    assert own.status_code == 403 and "cannot also approve it" in own.json()["error"]["message"]  # the playbook forbids self-approval
    assert "a gift for you" in shown["content"]["body"] and shown["override"]["edited_by"] == "reviewer-key"
    assert blocked.status_code == 422 and "nothing to edit" in blocked.json()["error"]["message"]
    with served.client("admin") as other:
        assert other.post(f"{path}/approve", json={"content_hash": new_hash}).status_code == 200
    assert audit(served.engine, "review_edited") == [("reviewer-key", str(item["id"]))]


def test_reject_escalate_withdraw_and_resolve(served: Served, tmp_path: Path) -> None:
    queue(served.engine, tmp_path)
    with served.client("reviewer") as client:
        one, two, three = client.get("/v1/review/items", params={"limit": 3}).json()["items"]
        wrong = client.post(f"/v1/review/items/{one['id']}/reject", json={"reason": "ugly"})
        rejected = client.post(f"/v1/review/items/{one['id']}/reject", json={"reason": "off_brand", "note": "too pushy"})
        escalated = client.post(f"/v1/review/items/{two['id']}/escalate", json={"to_role": "legal", "note": "health claim?"})
        to_legal = client.get("/v1/review/items", params={"role": "legal"}).json()
        client.post(f"/v1/review/items/{three['id']}/approve", json={"content_hash": three["content_hash"]})
        withdrawn = client.post(f"/v1/review/items/{three['id']}/withdraw")
        nothing = client.post(f"/v1/review/items/{three['id']}/withdraw")
        resolved = client.post(f"/v1/review/items/{two['id']}/resolve", json={"note": "fine"})
    assert wrong.status_code == 422 and wrong.json()["error"]["problems"][0]["field"] == "body.reason"
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert escalated.status_code == 200 and escalated.json()["priority"] == 75 and escalated.json()["assigned_role"] == "legal"
    assert to_legal["total"] == 1 and to_legal["items"][0]["id"] == two["id"]
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "open"
    assert nothing.status_code == 409
    assert resolved.status_code == 422 and "nothing to resolve" in resolved.json()["error"]["message"]  # a proposed message is approved or rejected
    with served.engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == three["decision_id"])).scalar_one() == "cancelled"
    assert [a for a, _ in audit(served.engine, "review_escalated") + audit(served.engine, "review_withdrawn")] == ["reviewer-key"] * 2


def test_bulk_previews_then_acts_on_each_item_on_its_own_hash_and_audit_row(served: Served, tmp_path: Path) -> None:
    total = queue(served.engine, tmp_path)
    with served.client("reviewer") as client:
        items = client.get("/v1/review/items", params={"limit": 100}).json()["items"]
        # Someone edits one item after the reviewer looked at the variant: that one is not approved unseen.
        client.post(f"/v1/review/items/{items[0]['id']}/edit", json={"body": "Hello {{ customer.id }}, again. " + UNSUBSCRIBE})
        variant = items[1]["content_hash"]
        preview = client.get("/v1/review/matching", params={"variant": variant})
        unfiltered = client.post("/v1/review/approve-all", json={})
        over = client.post("/v1/review/approve-all", json={"variant": variant, "limit": 1001})
        approved = client.post("/v1/review/approve-all", json={"variant": variant, "limit": 5})
        rest = client.post("/v1/review/reject-all", json={"agent": "mailer", "because": "timing"})
    assert preview.status_code == 200, preview.text
    assert len(preview.json()["items"]) == total - 1
    assert preview.json()["variants"] == [{"creative_id": "hello", "offer_id": None, "items": total - 1}]
    assert unfiltered.status_code == 422 and "needs a filter that narrows the queue" in unfiltered.json()["error"]["message"]
    assert over.status_code == 422 and over.json()["error"]["problems"][0]["field"] == "body.limit"
    assert approved.status_code == 200, approved.text
    done = [item["id"] for item in approved.json()["done"]]
    assert len(done) == 5 and approved.json()["refused"] == [] and items[0]["id"] not in done
    assert rest.status_code == 200 and len(rest.json()["done"]) == total - 5
    assert sorted(int(i) for a, i in audit(served.engine, "review_approved") if a == "reviewer-key") == sorted(done)
    assert len(audit(served.engine, "review_rejected")) == total - 5  # one audit row per item
    with served.engine.connect() as c:
        statuses = sa.select(review_items.c.status, sa.func.count()).group_by(review_items.c.status)
        assert dict(c.execute(statuses).all()) == {"approved": 5, "rejected": total - 5}


def test_a_bulk_action_reports_what_it_could_not_do(served: Served, tmp_path: Path) -> None:
    import pyarrow as pa

    from legato.store.ingest import import_customers

    total = queue(served.engine, tmp_path)
    # c001 revoked consent after the cycle: its proposal cannot be approved; the others can.
    import_customers(served.engine, pa.table({"id": ["c001"], "consent_email_marketing": ["revoked"]}), clock=FixedClock(AT))
    with served.client("reviewer") as client:
        answer = client.post("/v1/review/approve-all", json={"agent": "mailer"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert len(result["done"]) == total - 1
    [refused] = result["refused"]
    assert "cannot be sent now" in refused["why"]
    with served.engine.connect() as c:
        assert c.execute(sa.select(review_items.c.status).where(review_items.c.id == refused["item"])).scalar_one() == "open"
