"""Commands of step 5, learn and adapt: benchmarks, closed-loop simulation and off-policy evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from legato.cli.output import console, emit_json, fail
from legato.errors import LegatoError

def bench(
    name: Annotated[str, typer.Argument(help="hillstrom, obd, cdnow, throughput or online")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Data file or folder (hillstrom, obd and cdnow default to the copies packaged with Legato).")] = None,
    campaign: Annotated[str, typer.Option(help="obd only: the campaign folder name.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Run a benchmark on real data and print its table.

    Example: `legato bench obd --json`, or `legato bench obd --data path/to/obd --campaign men`
    """
    from legato.learn.bench import BENCHMARKS

    if name not in BENCHMARKS:
        fail(LegatoError(f"no benchmark named '{name}'", hint=f"choose one of: {', '.join(BENCHMARKS)}"))
    run, render = BENCHMARKS[name]
    try:
        if name == "obd":
            result = run(data, campaign)
        elif name in ("cdnow", "hillstrom"):
            result = run(data)
        else:
            result = run()
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(result)
    else:
        console.print(render(result))


def simulate(
    playbook: Annotated[Path, typer.Argument(help="A playbook whose creatives map to the Hillstrom arms (see --arm).")],
    days: Annotated[int, typer.Option(min=1, max=365, help="Simulated days.")] = 14,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulated customers' responses (the same seed gives the same days).")] = 7,
    folder: Annotated[Path, typer.Option(help="Folder for the simulation's database and outbox (emptied first).")] = Path("legato-simulation"),
    arm: Annotated[Optional[list[str]], typer.Option("--arm", help="CREATIVE=mens|womens, repeatable; default: the example playbook's creatives.")] = None,
    inject: Annotated[Optional[list[str]], typer.Option("--inject", help="Trouble from a day on: unsubscribe_spike:day=10,factor=4 (or complaint_spike), repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a playbook for N days against the Hillstrom world: real customers, simulated responses.

    Example: `legato simulate playbook.yaml --days 30 --seed 3 --arm mens_collection=mens --arm womens_collection=womens`
    (`--inject unsubscribe_spike:day=10,factor=4` to see the monitors catch a fault)
    """
    from legato.demo import ARMS, prepare_world
    from legato.learn.simulation import monitors, simulate as run_simulation
    from legato.monitor.lift import lift
    from legato.validation import load_playbook

    try:
        loaded = load_playbook(playbook)
        creatives = sorted(c.id for c in loaded.creatives)
        if arm:
            arms = _arms(arm)
            unknown = sorted(set(arms) - set(creatives))
            if unknown:
                raise LegatoError(
                    f"--arm names creatives the playbook does not have: {', '.join(unknown)}",
                    hint=f"the playbook's creatives: {', '.join(creatives) or 'none'}; give --arm CREATIVE=mens or CREATIVE=womens",
                )
        else:
            # The example playbook's mapping, for the creatives this playbook has; it was never given, so never cited.
            arms = {creative: world_arm for creative, world_arm in ARMS.items() if creative in creatives}
            if not arms:
                raise LegatoError(
                    "none of the playbook's creatives is mapped to a Hillstrom arm (the e-mail the experiment sent: mens or womens)",
                    hint=f"say which of {', '.join(creatives) or 'none'} plays which, e.g. --arm {creatives[0] if creatives else 'CREATIVE'}=mens",
                )
        faults = [_fault(text) for text in inject or []]
        engine, world, sinks, start = prepare_world(folder, loaded, playbook, seed=seed)
        world.faults.extend(_at(fault, start) for fault in faults)
        seen: list[dict[str, object]] = []
        history = run_simulation(engine, loaded, world, arms, start, days, sinks,
                                 on_day=lambda day: seen.append({"day": day.number, "agents": monitors(engine, day)}))
        with engine.connect() as connection:
            lifts = {agent.id: lift(connection, agent.id) for agent in loaded.agents}
    except LegatoError as error:
        fail(error)
    rewards = {a: [x for x in items if x.metric == "reward_per_customer"] for a, items in lifts.items()}
    if as_json:
        emit_json(
            {
                "days": seen,
                "simulated_days": days,
                "seed": seed,
                "sent": {a: sum(d.sent[a] for d in history) for a in lifts},
                "lift": {a: [x.to_dict() for x in items] for a, items in lifts.items()},
            }
        )
        return
    table = Table("agent", "sent", "reward/customer", "holdout", "lift", "95% interval", title=f"{days} simulated days", title_justify="left")
    for agent_id, items in rewards.items():
        for item in items:
            interval = "too few" if item.low is None else f"[{item.low:+.4f}, {item.high:+.4f}]"
            table.add_row(agent_id, f"{sum(d.sent[agent_id] for d in history):,}", f"{item.treated:.4f}", f"{item.control:.4f}", f"{item.difference:+.4f}", interval)
    console.print(table)
    if not any(rewards.values()):
        window = max(o.attribution_days for o in loaded.objectives)
        console.print(f"no decision has settled yet: outcomes are credited once the attribution window ({window} days at most) has closed; simulate more days")
    for agent in loaded.agents:
        reports = [d.cycle.agents[agent.id] for d in history if agent.id in d.cycle.agents]
        notes = []
        if not any(r.audience for r in reports):
            notes.append(
                f"no customer of the simulated world is in its audience {agent.audience!r}, so this agent was not tried: "
                "the Hillstrom customers carry recency_months, history, history_segment, mens, womens, zip_code, "
                "newbie and purchase_channel (and their one summary purchase), not your own attributes"
            )
        if any(r.global_control for r in reports):
            notes.append(f"{reports[-1].global_control:,} customers in the global control group left alone each day")
        gated = sum(r.uplift_gate["gated"] for r in reports if r.uplift_gate)
        if agent.uplift_gate is not None:
            still_open = [r.uplift_gate["reason"] for r in reports if r.uplift_gate and r.uplift_gate["open"]]
            notes.append(f"uplift gate skipped {gated:,} customers not worth contacting" + (f"; open on {len(still_open)} day(s) while it learned" if still_open else ""))
        if agent.send_time.mode == "learned":
            notes.append(f"{sum(r.own_send_time for r in reports):,} sends timed by the customer's own engagement hours")
        for note in notes:
            console.print(f"{agent.id}: {note}")


def _fault(text: str) -> tuple[str, int, float]:
    """``KIND:day=N,factor=F`` as (kind, day, factor), or an error naming the fix."""
    kind, _, rest = text.partition(":")
    kinds = ("unsubscribe_spike", "complaint_spike")
    fields = dict(part.partition("=")[::2] for part in rest.split(",") if part)
    try:
        day, factor = int(fields.pop("day")), float(fields.pop("factor"))
    except (KeyError, ValueError):
        day = factor = None  # type: ignore[assignment]
    if kind not in kinds or day is None or factor is None or fields or day < 1 or factor < 0:
        raise LegatoError(
            f"--inject {text!r} is not KIND:day=N,factor=F",
            hint=f"e.g. --inject unsubscribe_spike:day=10,factor=4; kinds: {', '.join(kinds)}; day 1 is the first simulated day",
        )
    return kind, day, factor


def _at(fault: tuple[str, int, float], start: object) -> object:
    from datetime import datetime, timedelta

    from legato.learn.simulator import Fault

    kind, day, factor = fault
    assert isinstance(start, datetime)
    return Fault(kind, start + timedelta(days=day - 1), factor)  # type: ignore[arg-type]


def _arms(pairs: list[str]) -> dict[str, str]:
    arms: dict[str, str] = {}
    for pair in pairs:
        creative, _, arm = pair.partition("=")
        if arm not in ("mens", "womens") or not creative:
            raise LegatoError(f"--arm {pair!r} is not CREATIVE=mens or CREATIVE=womens")
        arms[creative] = arm
    return arms


def evaluate(
    playbook: Annotated[Path, typer.Argument(help="The playbook the agent runs under.")],
    agent: Annotated[str, typer.Argument(help="The agent whose logged decisions are used.")],
    policy: Annotated[Optional[str], typer.Option(help="Candidate policy name; default: the agent's own.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Candidate parameter KEY=VALUE (YAML value), repeatable.")] = None,
    database: Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Estimate how a candidate policy would have done on an agent's logged decisions (IPS, SNIPS, DR).

    Example: `legato evaluate playbook.yaml winback_email --policy lin_ucb --param alpha=0.2`
    """
    import yaml

    from legato.decide.registry import check_policy
    from legato.learn.evaluate import evaluate_candidate
    from legato.validation import load_playbook
    from legato.playbook.models import PolicySpec
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        own = next((a.policy for a in loaded.agents if a.id == agent), None)
        name = policy or (own.name if own else "uniform_random")
        params = dict(own.params) if own and not policy else {}
        for item in param or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise LegatoError(f"--param {item!r} is not KEY=VALUE")
            params[key] = yaml.safe_load(value)
        problems = check_policy(name, params)
        if problems:
            raise LegatoError(f"candidate policy: {'.'.join(problems[0].field)}: {problems[0].message}", hint=problems[0].hint)
        result = evaluate_candidate(connect(database), loaded, agent, PolicySpec(name=name, params=params))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json(result)
        return
    table = Table("estimator", "value", "95% interval", title=f"{name} on {result['n_evaluated']:,} logged decisions of {agent} (learned from {result['n_train']:,} earlier ones)", title_justify="left")
    for estimator, estimate in result["estimates"].items():
        table.add_row(estimator.upper(), f"{estimate['value']:.4f}", f"[{estimate['ci_low']:.4f}, {estimate['ci_high']:.4f}]")
    console.print(table)
    console.print(f"the logging policy's own value on the same decisions: {result['logged_value']:.4f}")
    weight = result["mean_weight"]
    if abs(weight - 1.0) > 0.2:
        console.print(
            f"[yellow]mean importance weight {weight:.2f} (1 is ideal):[/] guardrails or budgets filtered many logged "
            "decisions, so IPS is biased; read SNIPS"
        )


def score(
    playbook: Annotated[Path, typer.Argument(help="The playbook (its `scoring` section sets the horizon).")],
    database: Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL.")] = None,
    at: Annotated[Optional[str], typer.Option(help="Score as of this instant (ISO-8601); default now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fit the purchase and visit propensity models on the store's history and score every customer.

    The scores become the fields `purchase_propensity` and `visit_propensity`, usable in segments,
    escalation rules and agent features. A cycle refreshes them by itself when the playbook uses
    them and the model is older than `scoring.refit_days`.

    Example: `legato score playbook.yaml --json`
    """
    from legato.clock import SystemClock, parse_instant
    from legato.learn.scoring import refresh_scores
    from legato.validation import load_playbook
    from legato.store.db import connect

    try:
        loaded = load_playbook(playbook)
        now = parse_instant(at) if at else SystemClock().now()
        reports = refresh_scores(connect(database), now, loaded.scoring)
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"at": now.isoformat(), "scores": [r.to_dict() for r in reports]})
        return
    table = Table("score", "customers scored", "trained on", "with outcome", "AUC (held out)", "Brier", title=f"scores as of {now:%Y-%m-%d %H:%M} UTC, horizon {loaded.scoring.horizon_days} days", title_justify="left")
    for r in reports:
        table.add_row(r.name, f"{r.scored:,}", f"{r.training_rows:,}", f"{r.positives:,}", "-" if r.auc is None else f"{r.auc:.3f}", "-" if r.brier is None else f"{r.brier:.4f}")
    console.print(table)
    for r in reports:
        if r.skipped:
            console.print(f"[yellow]{r.name} not fitted:[/] {r.skipped}")
        if r.kept_live_from:
            console.print(
                f"[yellow]{r.name} measured, not written:[/] the live scores come from a later fit "
                f"({r.kept_live_from:%Y-%m-%d %H:%M} UTC); a fit as of an earlier instant never replaces them",
                highlight=False,
            )
