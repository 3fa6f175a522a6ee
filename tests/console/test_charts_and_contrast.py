"""The console's SVG charts (labelled, described in words, escaped) and its colours' contrast (WCAG 2.1 AA)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from datetime import date, timedelta
from pathlib import Path

from legato.console.charts import Bar, Series, bar_chart, line_chart

CSS = Path(__file__).resolve().parents[2] / "src" / "legato" / "console" / "static" / "console.css"
SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ElementTree.Element:
    return ElementTree.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def test_a_line_chart_has_labelled_axes_a_target_and_words() -> None:
    days = [date(2024, 3, 4) + timedelta(days=i) for i in range(10)]
    chart = line_chart("visits <by day>", [Series("welcome_email", [(d, 0.01 * i) for i, d in enumerate(days)]),
                                          Series("holdout", [(d, None if i == 3 else 0.005 * i) for i, d in enumerate(days)])],
                       fmt=lambda v: f"{v * 100:.1f}%", target=0.05, y_label="visit rate", chart_id="t")
    root = _parse(chart)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "t-title t-desc"
    assert root.find(f"{SVG}title").text == "visits <by day>"  # escaped in the markup, read back as text
    assert "&lt;by day&gt;" in str(chart) and "<by day>" not in str(chart)
    words = root.find(f"{SVG}desc").text
    assert "From 2024-03-04 to 2024-03-13." in words and "welcome_email: last 9.0% on 2024-03-13" in words and "Target: 5.0%." in words
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Mar 04" in texts and "Mar 13" in texts and "visit rate" in texts and "day decided (UTC)" in texts
    assert any(t and t.endswith("%") for t in texts)  # the values' unit on the axis
    assert len(root.findall(f".//{SVG}line[@class='target']")) == 2  # the target line and its legend
    assert len(root.findall(f"{SVG}polyline")) == 3  # the agent's line, and the holdout's broken at its missing day


def test_a_chart_without_values_says_so() -> None:
    root = _parse(line_chart("nothing", [Series("a", [])], fmt=str, chart_id="e"))
    assert root.find(f"{SVG}desc").text == "No values yet in this period."


def test_a_bar_chart_draws_intervals_and_says_why_one_is_missing() -> None:
    chart = bar_chart("lift", [Bar("welcome", 0.012, -0.004, 0.028), Bar("winback", None, note="too few customers")],
                      fmt=lambda v: f"{v * 100:+.1f} pp", chart_id="b")
    root = _parse(chart)
    words = root.find(f"{SVG}desc").text
    assert "welcome: +1.2 pp, 95% interval -0.4 pp to +2.8 pp." in words and "winback: too few customers." in words
    assert len(root.findall(f"{SVG}line[@class='interval']")) == 3  # the whisker and its two ends
    assert len(root.findall(f"{SVG}rect")) == 1


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_console_colours_meet_wcag_aa_contrast() -> None:
    css = CSS.read_text(encoding="utf-8")
    colour = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", css))
    text_pairs = [("ink", "paper"), ("ink", "card"), ("muted", "paper"), ("muted", "card"), ("accent", "card"), ("accent", "paper"),
                  ("accent-ink", "accent"), ("good", "card"), ("bad", "card"), ("warn", "card"),
                  ("good", "good-bg"), ("bad", "bad-bg"), ("ink", "warn-bg"), ("ink", "bad-bg")]
    for fore, back in text_pairs:
        assert _contrast(colour[fore], colour[back]) >= 4.5, (fore, back, round(_contrast(colour[fore], colour[back]), 2))
    header = "#14213d"  # the top bar, white text on it
    assert _contrast("#ffffff", header) >= 4.5 and _contrast("#ffffff", "#2c3e66") >= 4.5
    for series in ("s0", "s1", "s2", "s3", "bad"):  # chart lines against the chart's white (non-text contrast 3:1)
        assert _contrast(colour[series], "#ffffff") >= 3.0, series
