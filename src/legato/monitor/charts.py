"""The KPI report as charts: a PNG, and an HTML page with the charts inline (SVG) and the tables.

Drawn with matplotlib's Agg backend (no display needed), which the ``charts`` extra installs
(``pip install 'legato[charts]'``); without it, asking for a chart says so and writes nothing.
Each agent (or group of ``--by``) gets one row of two panels: its primary KPI per day over the
settled sends, with the held-out customers' rate and the target; and the messages sent and
settled per day.
"""

from __future__ import annotations

import html
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

from legato.errors import Invalid
from legato.monitor.kpis import GroupKpis, KpiLine, KpiReport

MAX_ROWS = 24  # groups drawn; a larger report's PNG would be unreadable (the HTML tables keep them all)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise Invalid(
            "charts need matplotlib, which is not installed",
            hint="install the charts extra: pip install 'legato[charts]' (or leave out --html/--png); nothing was written",
        ) from None
    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    return plt


def _title(group: GroupKpis) -> str:
    name = group.agent_id if group.group is None else f"{group.agent_id} · {group.group}"
    return f"{name} ({group.objective})" if group.objective else name


def _primary(group: GroupKpis) -> KpiLine | None:
    return next((k for k in group.kpis if k.primary), group.kpis[0] if group.kpis else None)


def figure(report: KpiReport, groups: list[GroupKpis] | None = None) -> Any:
    """One figure: a row of two labelled panels per group."""
    plt = _pyplot()
    shown = (groups if groups is not None else report.groups)[:MAX_ROWS]
    rows = max(len(shown), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.2 * rows), squeeze=False, constrained_layout=True)
    if not shown:
        axes[0][0].text(0.5, 0.5, "no metrics in this period", ha="center", va="center")
        axes[0][0].set_axis_off()
        axes[0][1].set_axis_off()
    for (left, right), group in zip(axes, shown, strict=False):
        primary = _primary(group)
        days = [p.day for p in group.days]
        metric = primary.metric if primary else "visit_rate"
        rate = metric.endswith("_rate") or metric == "revenue_per_send"
        scale = 100.0 if metric.endswith("_rate") else 1.0
        unit = " (%)" if metric.endswith("_rate") else ""
        values = [p.primary * scale if p.primary is not None else float("nan") for p in group.days]
        left.plot(days, values, marker="o", markersize=3, label="sent (per settled send)", color="tab:blue")
        held = [p.holdout * scale if p.holdout is not None else float("nan") for p in group.days]
        if rate:
            if any(h == h for h in held):  # any not NaN
                left.plot(days, held, marker="s", markersize=3, label="holdout (per decision)", color="tab:gray", linestyle="--")
        if primary is not None and primary.target is not None:
            left.axhline(primary.target * scale, color="tab:green", linestyle=":", label=f"target {primary.target * scale:g}{unit.strip(' ()')}")
        finite = [v for v in [*values, *(held if rate else [])] if v == v]
        top = max([*finite, primary.target * scale if primary is not None and primary.target is not None else 0.0], default=0.0)
        left.set_ylim(0, (top or 1.0) * 1.3)  # room for the legend above the lines
        left.set_title(f"{_title(group)}: {metric}", fontsize=10, loc="left")
        left.set_xlabel("day decided (UTC)")
        left.set_ylabel(f"{metric}{unit}")
        left.legend(fontsize=8, loc="upper left", ncols=3)
        left.grid(alpha=0.3)
        sent = [p.sent for p in group.days]
        right.bar(days, sent, color="tab:blue", alpha=0.6, label="sent")
        right.bar(days, [p.settled for p in group.days], color="tab:orange", alpha=0.6, label="settled", width=0.5)
        # Room above the tallest bar for the legend; no negative axis when nothing was sent.
        right.set_ylim(0, max(max(sent, default=0), 1) * 1.3)
        if not any(sent):
            right.text(0.5, 0.5, "no messages sent in this period", ha="center", va="center", transform=right.transAxes, color="0.4")
        right.set_title(f"{_title(group)}: messages per day", fontsize=10, loc="left")
        right.set_xlabel("day decided (UTC)")
        right.set_ylabel("messages")
        right.legend(fontsize=8, loc="upper left", ncols=2)
        right.grid(alpha=0.3, axis="y")
        for axis in (left, right):
            axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    return fig


def write_png(report: KpiReport, path: Path) -> None:
    plt = _pyplot()
    fig = figure(report)
    try:
        _write(path, lambda out: fig.savefig(out, format="png", dpi=110))
    finally:
        plt.close(fig)


def _write(path: Path, save: Any) -> None:
    try:
        with path.open("wb") as out:
            save(out)
    except OSError as error:
        raise Invalid(f"cannot write {path}: {error.strerror or error}", hint="give a file in a folder you can write to") from None


def _svg(report: KpiReport, group: GroupKpis) -> str:
    plt = _pyplot()
    fig = figure(report, [group])
    buffer = io.StringIO()
    try:
        # Text stays text (searchable, a third of the size), in the page's own font.
        with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "legato"}):
            fig.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: without the XML prolog and doctype


def value_text(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric.endswith("_rate"):
        return f"{value:.2%}"
    if metric == "sends":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def lift_text(line: KpiLine, *, unit: bool = True) -> tuple[str, str]:
    """The lift and its interval as the report prints them ("—" when there is none); ``unit``
    False leaves "pp" off the interval (the terminal's table says it once)."""
    lift = line.lift
    if lift is None:
        return "—", ""
    pp = line.metric.endswith("_rate")
    difference = f"{lift.difference * 100:+.2f} pp" if pp else f"{lift.difference:+,.3f}"
    if lift.low is None or lift.high is None:
        return (difference if not (lift.note or "").startswith("no ") else "—"), lift.note or ""
    interval = f"[{lift.low * 100:+.2f}, {lift.high * 100:+.2f}]{' pp' if unit else ''}" if pp else f"[{lift.low:+,.3f}, {lift.high:+,.3f}]"
    return difference, interval


def plus_minus(line: KpiLine) -> str:
    """The lift ± half its 95% interval (Welch's interval is symmetric), or the lift alone when it has none."""
    lift = line.lift
    if lift is None or (lift.low is None and (lift.note or "").startswith("no ")):
        return "—"
    pp = line.metric.endswith("_rate")
    scale, unit, digits = (100.0, " pp", 2) if pp else (1.0, "", 2)
    text = f"{lift.difference * scale:+,.{digits}f}"
    if lift.low is not None and lift.high is not None:
        text += f" ±{(lift.high - lift.low) / 2 * scale:,.{digits}f}"
    return text + unit


def met_text(line: KpiLine) -> str:
    return "—" if line.met is None else ("met" if line.met else "missed")


def write_html(report: KpiReport, path: Path) -> None:
    esc = html.escape
    seen = sorted({p.day for g in report.groups for p in g.days})
    first = report.since or (seen[0] if seen else None)
    last = (report.until - timedelta(days=1)) if report.until else (seen[-1] if seen else None)
    period = f"from {first} to {last} (UTC days)" if first and last else "in no day yet"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Legato KPIs</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1em}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}"
        ".missed{color:#b00020}.met{color:#1b7f3b}.counts th{text-align:left;background:#f6f6f6}svg{max-width:100%;height:auto}</style></head><body>",
        f"<h1>KPIs by day decided</h1><p>Decisions made {esc(period)}"
        + (f", by {esc(report.by)}" if report.by else "")
        + ". Rates are per settled send (the attribution window closed); lift vs holdout is per settled decision, intent to treat, with a 95% interval.</p>",
    ]
    if not report.groups:
        parts.append("<p>No metrics in this period.</p>")
    for group in report.groups:
        parts.append(f"<h2>{esc(_title(group))}</h2><table><tr><th>KPI</th><th>value</th><th>target</th><th></th><th>lift vs holdout</th><th>95% interval</th></tr>")
        for line in group.kpis:
            difference, interval = lift_text(line)
            name = f"{line.metric}{' (primary)' if line.primary else ''}{' (guardrail)' if line.kind == 'guardrail' else ''}"
            target = "—" if line.target is None else ("≤ " if line.limit == "max" else "≥ ") + value_text(line.metric, line.target)
            parts.append(
                f"<tr><td>{esc(name)}</td><td>{esc(value_text(line.metric, line.value))}</td><td>{esc(target)}</td>"
                f"<td class='{'met' if line.met else 'missed' if line.met is False else 'none'}'>{met_text(line)}</td>"
                f"<td>{esc(difference)}</td><td>{esc(interval)}</td></tr>"
            )
        # The counts in rows of six (name, value) pairs, so the table fits the page.
        cells = [(k.replace("_", " "), f"{v:,.2f}" if k in ("revenue", "offer_cost") else f"{v:,.0f}") for k, v in group.counts.items()]
        parts.append("</table><table class='counts'>")
        for start in range(0, len(cells), 6):
            parts.append("<tr>" + "".join(f"<th>{esc(k)}</th><td>{esc(v)}</td>" for k, v in cells[start : start + 6]) + "</tr>")
        parts.append("</table>")
        if group.suppressed:
            parts.append("<p>Suppressed by reason: " + esc(", ".join(f"{r or 'unnamed'} {n:,.0f}" for r, n in list(group.suppressed.items())[:8])) + "</p>")
        if group.review_minutes is not None:
            parts.append(f"<p>Mean review time: {group.review_minutes:,.1f} minutes from queued to a person's decision.</p>")
        parts.append(_svg(report, group))
    if report.anomalies:
        parts.append("<h2>Anomalies the detector recorded</h2><table><tr><th>day</th><th>agent</th><th>series</th><th>observed</th><th>expected range</th><th>z</th></tr>")
        for a in report.anomalies:
            parts.append(
                f"<tr><td>{esc(a['day'])}</td><td>{esc(a['agent'])}</td><td>{esc(a['series'])}</td><td>{a['observed']:.4g}</td>"
                f"<td>{a['low']:.4g} – {a['high']:.4g}</td><td>{a['z']:+.1f}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    text = "\n".join(parts)
    _write(path, lambda out: out.write(text.encode("utf-8")))
