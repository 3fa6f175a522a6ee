"""Templates cannot exhaust the process: what they build is bounded, and the failure is the message's alone."""

from __future__ import annotations

import pytest

from legato.deliver.render import CreativeTemplate, RenderError
from legato.deliver.render import render_template
from legato.playbook.models import Creative


def _render(body: str) -> str:
    creative = Creative.model_validate({"id": "c", "channel": "email", "subject": "s", "body": body})
    return CreativeTemplate(creative).render({}).body


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("{{ 'x' * 10**10 }}", "repetition"),
        ("{{ [0] * 10**9 }}", "repetition"),
        ("{% for i in range(10**9) %}{% endfor %}", "range"),
        ("{{ 7 ** 100000000 }}", "bits"),
        ("{{ '%1000000000s' % 'a' }}", "field width"),
        ("{{ '%1000000000s'|format('a') }}", "field width"),
        ("{{ '{:>1000000000}'.format('a') }}", "field width"),
        ("{{ 'a'|center(10**9) }}", "width"),
        ("{% for i in range(5000) %}{% for j in range(5000) %}xxxxxxxx{% endfor %}{% endfor %}", "characters of output"),
    ],
)
def test_what_a_template_builds_is_bounded(body: str, what: str) -> None:
    with pytest.raises(RenderError, match=what):
        _render(body)


def test_the_content_check_reports_it_as_a_template_finding() -> None:
    check = render_template("{{ 'x' * 10**10 }}", {})
    assert check.text is None and [f.rule for f in check.findings] == ["template.forbidden_access"]


def test_ordinary_templates_render_as_before() -> None:
    body = "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%5.1f'|format(3.14159) }} {{ '{:>4}'.format('x') }} {{ range(3)|list }} {{ 'x'|center(5) }}"
    assert _render(body) == "ababab 1024   3.1    x [0, 1, 2]   x  "
