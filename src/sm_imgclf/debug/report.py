"""The analyzer's report: a terminal summary and one self-contained HTML file."""

from __future__ import annotations

import html
import statistics
from pathlib import Path
from typing import Any

from sm_imgclf._pages import inline_png, write_page
from sm_imgclf.debug import plots
from sm_imgclf.debug.insights import Insight
from sm_imgclf.runtime.checks.records import Records
from sm_imgclf.runtime.checks.rules import RuleResult


def _headline(rules: list[RuleResult], found: list[Insight]) -> tuple[bool, str]:
    fired = [r.name for r in rules if r.triggered]
    act = [i.name for i in found if i.triggered]
    if not fired and not act:
        return True, "No problems found: every check passed and the profiler saw no bottleneck."
    parts = []
    if fired:
        parts.append(f"{len(fired)} check(s) triggered: {', '.join(fired)}")
    if act:
        parts.append(f"profiler: {', '.join(act)}")
    return False, "; ".join(parts) + "."


def _facts(records: Records) -> str:
    meta, epochs = records.meta, records.epochs
    best = max(
        (e.get("valid:accuracy", e.get("train:accuracy", 0.0)) for e in epochs), default=None
    )
    seconds = [s for r in records.durations for s in r["seconds"]]
    bits = [
        f"model {meta.get('model', '?')}",
        f"{len(meta.get('class_names', []))} classes",
        f"{len(epochs)} epoch(s)",
        f"{len(records.steps)} recorded steps",
    ]
    if best is not None:
        bits.append(f"best accuracy {best:.4f}")
    if seconds:
        bits.append(f"median step {statistics.median(seconds) * 1000:.1f} ms")
    sources = sorted({r["gpu_source"] for r in records.system if "gpu_source" in r})
    if sources:
        bits.append(f"GPU figures from {', '.join(sources)}")
    if records.skipped:
        bits.append(
            f"{len(records.skipped)} recorded step(s) skipped by the AMP scaler "
            "(left out of the rules)"
        )
    return ", ".join(bits)


def text_summary(name: str, records: Records, rules: list[RuleResult], found: list[Insight]) -> str:
    """The verdict, the rules and the insights of job ``name`` as plain text."""
    _, headline = _headline(rules, found)
    lines = [f"Checks and profile of {name}: {_facts(records)}", headline, "", "Rules:"]
    for rule in rules:
        where = f" at {rule.at} {rule.step}" if rule.triggered else ""
        lines.append(
            f"  [{'TRIGGERED' if rule.triggered else 'ok':>9}] {rule.name}{where}: {rule.message}"
        )
        if rule.triggered:
            lines.append(f"              suggestion: {rule.suggestion}")
    lines += ["", "Profiler:"]
    for item in found:
        lines.append(f"  [{'ACT' if item.triggered else 'ok':>9}] {item.name}: {item.message}")
        if item.triggered:
            lines.append(f"              suggestion: {item.suggestion}")
    return "\n".join(lines)


def _rule_rows(rules: list[RuleResult]) -> str:
    rows = []
    for rule in rules:
        tag = _FIRED.format("triggered") if rule.triggered else _CLEAR
        where = f"{rule.at} {rule.step}" if rule.triggered else ""
        params = ", ".join(f"{k}={v:g}" for k, v in rule.parameters.items())
        rows.append(
            f"<tr><td><b>{rule.name}</b><br><span class=meta>{html.escape(params)}"
            f"</span></td><td>{tag}</td><td>{where}</td><td>{html.escape(rule.message)}"
            f"</td><td>{html.escape(rule.suggestion)}</td></tr>"
        )
    return (
        "<table><tr><th>rule</th><th>status</th><th>first at</th><th>finding</th>"
        "<th>suggestion</th></tr>" + "".join(rows) + "</table>"
    )


_FIRED = '<span class="tag fired">{}</span>'
_CLEAR = '<span class="tag clear">ok</span>'


def _insight_rows(found: list[Insight]) -> str:
    if not found:
        return "<p>No profiler data was recorded.</p>"
    rows = []
    for item in found:
        tag = _FIRED.format("act") if item.triggered else _CLEAR
        advice = html.escape(item.suggestion) if item.triggered else ""
        rows.append(
            f"<tr><td><b>{item.name}</b></td><td>{tag}</td>"
            f"<td>{html.escape(item.message)}</td><td>{advice}</td></tr>"
        )
    return (
        "<table><tr><th>insight</th><th>status</th><th>finding</th><th>suggestion</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _operator_rows(operators: list[dict[str, Any]]) -> str:
    if not operators:
        return "<p>No operator profile was recorded.</p>"
    rows = "".join(
        f"<tr><td><code>{html.escape(o['name'])}</code></td><td>{o['calls']}</td>"
        f"<td>{o['self_cpu_ms']:.2f}</td><td>{o['self_gpu_ms']:.2f}</td></tr>"
        for o in operators
    )
    return (
        "<table><tr><th>operator</th><th>calls</th><th>self CPU ms</th>"
        "<th>self GPU ms</th></tr>" + rows + "</table>"
    )


def write_report(
    name: str, records: Records, path: Path, rules: list[RuleResult], found: list[Insight]
) -> Path:
    """Write the HTML report of job ``name`` to ``path``: no external assets, charts inline."""
    good, headline = _headline(rules, found)
    charts = [inline_png(plots.losses(records, None))]
    if records.steps:
        charts.append(inline_png(plots.gradients(records, None)))
    profile = [inline_png(plots.step_times(records, None))] if records.splits else []
    if records.system:
        profile.append(inline_png(plots.system(records, None)))
    body = f"""<h1>Training checks and profile</h1>
<p class=meta>{html.escape(name)} · {html.escape(_facts(records))}</p>
<div id=summary class="verdict {"ok" if good else "bad"}">{html.escape(headline)}</div>
<h2 id=rules>Rules</h2>{_rule_rows(rules)}
<h2 id=training>Training</h2>{"".join(charts)}
<h2 id=profiler>Profiler</h2>{_insight_rows(found)}{"".join(profile)}
<h3>Top operators (torch.profiler window)</h3>{_operator_rows(records.operators)}"""
    return write_page(path, f"Checks: {name}", body)
