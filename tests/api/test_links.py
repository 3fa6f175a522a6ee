"""The links a message carries, over real HTTP: one-click unsubscribe (RFC 8058), the open pixel and
click redirects, each authenticated by the message's signed token and refused when it fails."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.render import Rendered, open_pixel_url, tracked
from legato.deliver.tokens import SECRET_ENV, SECRET_FILE_ENV
from legato.playbook.models import Playbook
from legato.store.schema import consent_history, consents, events, outbox
from legato.validation import parse_playbook
from tests.api.conftest import Served, serve
from tests.world import AT, PLAYBOOK, load_customers

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
LINK = "https://shop.example/boots?size=42&color=red"


@pytest.fixture(autouse=True)
def _own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    monkeypatch.setenv(SECRET_ENV, "first-key-0123456789abcdef")


def world(tracking: str | None = None) -> Playbook:
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0.0").replace("BUDGET", "{}")
    text = text.replace("Unsubscribe: {{ unsubscribe_url }}", f"Boots: {LINK}. Unsubscribe: {{{{ unsubscribe_url }}}}")
    if tracking:
        text = text.replace("attributes: {tier: string}", f"  tracking: {tracking}\nattributes: {{tier: string}}", 1)
    return parse_playbook(text)


def send(served: Served, pb: Playbook, folder: Path, at=AT, n: int = 6) -> list[dict]:
    if at == AT:
        load_customers(served.engine, n=n)
    run_cycle(served.engine, pb, FixedClock(at), transports(pb, folder))
    dispatch_due(served.engine, pb, FixedClock(at + timedelta(hours=2)), transports(pb, folder))
    path = folder / "out" / "email.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def token_of(message: dict) -> str:
    return re.search(r"\?t=([a-z2-7]+\.[a-z2-7]+)", message["body"]).group(1)


def consent_of(served: Served, customer: str, channel: str = "email") -> str | None:
    with served.engine.connect() as c:
        return c.execute(sa.select(consents.c.status).where(consents.c.customer_id == customer, consents.c.channel == channel,
                                                            consents.c.purpose == "marketing")).scalar_one_or_none()


def test_one_click_unsubscribe_with_a_plain_post_takes_effect_at_once(served: Served, tmp_path: Path) -> None:
    pb = world()
    first = send(served, pb, tmp_path / "r1")
    message = first[0]
    customer, token = message["customer_id"], token_of(message)
    link = f"https://test.example/u?t={token}"
    assert message["headers"] == {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert consent_of(served, customer) == "granted"
    # A later cycle decides again: the customer's next e-mail waits in the outbox.
    run_cycle(served.engine, pb, FixedClock(AT + timedelta(days=4)), transports(pb, tmp_path / "r2"))
    with served.engine.connect() as c:
        waiting = c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == customer, outbox.c.status == "pending")).all()
    assert waiting
    # What a mail provider sends from List-Unsubscribe-Post: a form-encoded POST, no login, no cookie.
    with served.client(None) as client:
        done = client.post("/v1/unsubscribe", params={"t": token}, data=ONE_CLICK)
        assert done.status_code == 200 and "text/html" in done.headers["content-type"]
        assert "no more marketing by e-mail" in done.text and message["to"] not in done.text
        with served.engine.connect() as c:
            history = c.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one()
        again = client.post("/v1/unsubscribe", params={"t": token}, data=ONE_CLICK)  # idempotent: the same answer, nothing new
        assert again.status_code == 200 and again.text == done.text
    with served.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one() == history
        statuses = c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == customer)).scalars().all()
    assert consent_of(served, customer) == "revoked" and sorted(statuses) == ["cancelled", "sent"]
    # The next dispatch sends the others their e-mail, and this customer nothing.
    later = send(served, pb, tmp_path / "r2", at=AT + timedelta(days=4))
    assert later and customer not in {m["customer_id"] for m in later}


def test_forged_tampered_and_expired_tokens_are_refused_and_change_nothing(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, *_ = send(served, world(), tmp_path)
    token, other = token_of(first), token_of(second)
    assert LINK in first["body"] and "/v1/click" not in first["body"]  # tracking off (the default): links as written
    head, mac = token.split(".")
    forged = [
        f"{head}.{'a' * 26}",  # made up
        f"{head}.{mac[:-1]}{'b' if mac[-1] != 'b' else 'c'}",  # one character changed
        f"{other.split('.')[0]}.{mac}",  # another message's id under this one's MAC
        "", "not-a-token",
    ]
    with served.client(None) as client:
        for bad in forged:
            page = client.get("/v1/unsubscribe", params={"t": bad})
            posted = client.post("/v1/unsubscribe", params={"t": bad}, data=ONE_CLICK)
            assert page.status_code == posted.status_code == 400, bad
            assert "not valid" in posted.text and "Nothing was changed" in posted.text
        # Expired: signed by a key retired since (legato secret rotate, after its 90 days).
        monkeypatch.setenv(SECRET_ENV, "second-key-0123456789abcdef")
        assert client.post("/v1/unsubscribe", params={"t": token}, data=ONE_CLICK).status_code == 400
        # While the old key is still accepted after it, the link works.
        monkeypatch.setenv(SECRET_ENV, "second-key-0123456789abcdef,first-key-0123456789abcdef")
        no_marker = client.post("/v1/unsubscribe", params={"t": token}, data={"unsubscribe": "yes"})
        assert no_marker.status_code == 400 and "One-Click" in no_marker.text  # RFC 8058's marker is required
        assert consent_of(served, first["customer_id"]) == "granted" and consent_of(served, second["customer_id"]) == "granted"
        assert client.post("/v1/unsubscribe", params={"t": token}, data=ONE_CLICK).status_code == 200
    assert consent_of(served, first["customer_id"]) == "revoked" and consent_of(served, second["customer_id"]) == "granted"


def test_the_confirmation_page_changes_nothing_and_offers_everything(served: Served, tmp_path: Path) -> None:
    message = send(served, world(), tmp_path)[0]
    token = token_of(message)
    with served.client(None) as client:
        page = client.get("/v1/unsubscribe", params={"t": token})
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert "Content-Security-Policy" in page.headers and page.headers["cache-control"] == "no-store"
        assert "Unsubscribe from everything" in page.text and 'name="scope" value="all"' in page.text
        assert f'action="/v1/unsubscribe?t={token}"' in page.text and 'value="One-Click"' in page.text
        assert message["to"] not in page.text and message["customer_id"] not in page.text  # no personal data
        assert consent_of(served, message["customer_id"]) == "granted"  # a GET (a mail scanner) changes nothing
        everything = client.post("/v1/unsubscribe", params={"t": token}, data={**ONE_CLICK, "scope": "all"})
        assert everything.status_code == 200 and "any channel" in everything.text
        # A browser's multipart form works too (RFC 8058 allows it).
        assert client.post("/v1/unsubscribe", params={"t": token}, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    with served.engine.connect() as c:
        revoked = set(c.execute(sa.select(consents.c.channel).where(consents.c.customer_id == message["customer_id"], consents.c.status == "revoked")).scalars())
    assert revoked == {"email", "sms", "whatsapp", "push", "webhook"}


def test_opens_and_clicks_are_events_of_the_decision_and_a_tampered_target_is_refused(served: Served, tmp_path: Path) -> None:
    pb = world(tracking=f'{{opens: true, clicks: true, base_url: "{served.url}"}}')
    message = send(served, pb, tmp_path)[0]
    token = token_of(message)
    tracked_links = re.findall(rf"{re.escape(served.url)}/v1/click\?[^\s]+[a-z2-7]", message["body"])
    assert len(tracked_links) == 1 and LINK not in message["body"].replace(tracked_links[0], "")
    assert f"https://test.example/u?t={token}" in message["body"]  # the unsubscribe link stays direct (RFC 8058)
    query = parse_qs(urlsplit(tracked_links[0]).query)
    assert query["u"] == [LINK] and query["t"] == [token]
    with served.client(None, follow_redirects=False) as client:
        for _ in range(2):  # clicked twice: one click event
            went = client.get(tracked_links[0])
            assert went.status_code == 302 and went.headers["location"] == LINK
        elsewhere = client.get("/v1/click", params={"t": token, "u": "https://evil.example/", "s": query["s"][0]})
        assert elsewhere.status_code == 400 and "location" not in elsewhere.headers
        for _ in range(3):  # read three times: one open event
            pixel = client.get(urlsplit(open_pixel_url(pb, token)).path, params={"t": token})
            assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif" and pixel.content.startswith(b"GIF89a")
    with served.engine.connect() as c:
        found = c.execute(sa.select(events.c.type, events.c.customer_id, events.c.properties)).all()
    assert sorted(r.type for r in found) == ["click", "open"]
    for row in found:
        props = row.properties if isinstance(row.properties, dict) else json.loads(row.properties)
        assert row.customer_id == message["customer_id"] and props["decision_id"] == str(message["decision_id"])


def test_html_gets_the_pixel_and_tracked_links_only_when_the_brand_says_so() -> None:
    @dataclass(frozen=True)
    class WithHtml(Rendered):
        html: str | None = None

    pb = world(tracking='{opens: true, clicks: false, base_url: "https://legato.example"}')
    html = WithHtml("Hi", None, f"See {LINK}", f'<html><body><a href="{LINK.replace("&", "&amp;")}">boots</a></body></html>')
    out = tracked(pb, "email", html, "tok.en", lambda url: "sig")
    assert out.body == html.body and out.html.count("<img") == 1 and "https://legato.example/v1/open?t=tok.en" in out.html
    clicks = world(tracking='{clicks: true, base_url: "https://legato.example"}')
    rewritten = tracked(clicks, "email", html, "tok.en", lambda url: "sig")
    assert "<img" not in rewritten.html and 'href="https://legato.example/v1/click?t=tok.en&amp;u=https%3A%2F%2Fshop.example' in rewritten.html
    assert tracked(clicks, "sms", html, "tok.en", lambda url: "sig") == html  # a text's length is its cost: left as written


def test_the_pages_escape_what_they_show() -> None:
    from legato.api.routes.links import _PAGE

    page = _PAGE.render(brand="<script>x()</script> & Co", support=None, title="Unsubscribe", state="ask", channel="e-mail",
                        action='/v1/unsubscribe?t=a"><script>')
    assert "<script>" not in page and "&lt;script&gt;x()&lt;/script&gt; &amp; Co" in page and 'action="/v1/unsubscribe?t=a&#34;&gt;&lt;script&gt;"' in page


def test_an_email_over_smtp_carries_links_that_legato_serve_answers(served: Served, tmp_path: Path) -> None:
    """End to end: an e-mail to a real SMTP server (aiosmtpd), parsed with the email package; its
    open pixel and click link recorded by legato serve, and its List-Unsubscribe header's
    one-click POST taking effect."""
    import pyarrow as pa

    from legato.store.ingest import import_customers
    from tests.smtp_box import Mailbox

    with Mailbox() as box:
        text = f"""
brand:
  name: Mail Co
  legal: {{sender_name: Mail Co, postal_address: "3 Pier Rd", support_contact: "help@mail.example", unsubscribe_url: "{served.url}/v1/unsubscribe"}}
  tracking: {{opens: true, clicks: true}}
objectives:
  - {{id: grow, goal: engagement, why: testing, stages: [any], kpis: [{{metric: visit_rate, target: 0.1}}]}}
lifecycle:
  - {{stage: any, when: "true"}}
channels:
  email: {{kind: smtp, host: 127.0.0.1, port: {box.port}}}
creatives:
  - id: hello
    channel: email
    subject: "New boots"
    body: "Boots: {LINK} Unsubscribe: {{{{ unsubscribe_url }}}} {{{{ brand.postal_address }}}}"
    html: "<p><a href=\\"{LINK.replace('&', '&amp;')}\\">Boots</a></p><p><a href=\\"{{{{ unsubscribe_url }}}}\\">Unsubscribe</a> {{{{ brand.postal_address }}}}</p>"
agents:
  - {{id: mailer, objective: grow, audience: "true", actions: {{creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}},
     policy: {{name: uniform_random}}, holdout: 0, trust_stage: 3}}
"""
        pb = parse_playbook(text)
        import_customers(served.engine, pa.table({"id": ["m1"], "email": ["m1@mail.example"], "time_zone": ["UTC"]}), attribute_types={}, clock=FixedClock(AT))
        run_cycle(served.engine, pb, FixedClock(AT), transports(pb, tmp_path))
        report = dispatch_due(served.engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
        assert report.totals()["sent"] == 1, report.errors
        (mail,) = [r.parsed() for r in box.received]
    html = mail.get_body(("html",)).get_content()
    plain = mail.get_body(("plain",)).get_content()
    pixel = re.search(r'<img src="([^"]+)"', html).group(1)
    click = re.search(r'href="([^"]*/v1/click\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"{served.url}/v1/click?" in plain and LINK not in plain.replace(re.search(r"http\S+/v1/click\S+", plain).group(0), "")
    one_click = mail["List-Unsubscribe"].strip("<>")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and one_click.startswith(f"{served.url}/v1/unsubscribe?t=")
    with served.client(None, follow_redirects=False) as client:
        assert client.get(pixel).status_code == 200
        went = client.get(click)
        assert went.status_code == 302 and went.headers["location"] == LINK
        done = client.post(one_click, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200
    with served.engine.connect() as c:
        assert sorted(c.execute(sa.select(events.c.type)).scalars()) == ["click", "open"]
    assert consent_of(served, "m1") == "revoked"


def _limited_server(served: Served, burst: int) -> Iterator[str]:
    """A second server on the same store whose links allow ``burst`` requests per client address
    and then almost none (0.01 a second: the next token is 100 s away, whatever the test's pace)."""
    from legato.api import ApiSettings

    settings = ApiSettings(playbook=served.playbook, clock=served.clock, rate_limit=0, link_rate_limit=0.01, link_burst=burst)
    return serve(served.engine, settings)


def _from(address: str, url: str) -> httpx.Client:
    """A client whose requests leave from ``address`` (any 127.x.y.z is this host's loopback)."""
    return httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_the_links_are_limited_per_client_address_with_a_retry_after(served: Served, tmp_path: Path) -> None:
    message = send(served, world(), tmp_path)[0]
    token = token_of(message)
    for url in _limited_server(served, burst=3):
        with _from("127.0.0.1", url) as client, _from("127.0.0.2", url) as other:
            assert [client.get("/v1/unsubscribe", params={"t": token}).status_code for _ in range(3)] == [200, 200, 200]
            page = client.get("/v1/unsubscribe", params={"t": token})
            assert page.status_code == 429 and int(page.headers["retry-after"]) >= 90
            assert "Too many requests came from your address" in page.text and "Nothing was changed" in page.text
            pixel = client.get("/v1/open", params={"t": token})
            assert pixel.status_code == 429 and pixel.headers["content-type"] == "image/gif" and "retry-after" in pixel.headers
            assert client.get("/v1/click", params={"t": token, "u": LINK, "s": "x"}).status_code == 429
            # Another address has its own bucket.
            assert other.get("/v1/unsubscribe", params={"t": token}).status_code == 200
    with served.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 0  # the refused pixel recorded no open


def test_a_one_click_unsubscribe_with_a_valid_token_is_never_lost_to_the_limit(served: Served, tmp_path: Path) -> None:
    first, second, *_ = send(served, world(), tmp_path)
    head, mac = token_of(second).split(".")
    for url in _limited_server(served, burst=1):
        with _from("127.0.0.3", url) as client:
            assert client.get("/v1/unsubscribe", params={"t": token_of(first)}).status_code == 200  # the address's one request
            # Past the limit, a forged token gets the wait, not an answer about the token, and changes nothing ...
            forged = client.post("/v1/unsubscribe", params={"t": f"{head}.{'a' * 26}"}, data=ONE_CLICK)
            assert forged.status_code == 429 and "retry-after" in forged.headers
            no_marker = client.post("/v1/unsubscribe", params={"t": token_of(first)}, data={"unsubscribe": "yes"})
            assert no_marker.status_code == 429
            assert consent_of(served, first["customer_id"]) == "granted" and consent_of(served, second["customer_id"]) == "granted"
            # ... and a real one (a mailbox provider's RFC 8058 POSTs come from few addresses, in bulk) is taken.
            for message in (first, second):
                done = client.post("/v1/unsubscribe", params={"t": token_of(message)}, data=ONE_CLICK)
                assert done.status_code == 200 and "no more marketing by e-mail" in done.text
    assert consent_of(served, first["customer_id"]) == "revoked" and consent_of(served, second["customer_id"]) == "revoked"
