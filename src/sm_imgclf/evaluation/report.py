"""The evaluation report: one self-contained HTML page (charts and images inline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sm_imgclf._pages import inline_png, write_page
from sm_imgclf.evaluation import gallery as eval_gallery
from sm_imgclf.evaluation import plots as eval_plots

if TYPE_CHECKING:
    from sm_imgclf.evaluation.scores import Scores

# Beyond this many classes a full matrix is unreadable: the confused pairs stand in for it.
MATRIX_LIMIT = 30

_EXTRA_STYLE = """
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(132px,1fr));gap:.8rem}
.cards{margin:1rem 0}.card{background:#f4f6f9;border-radius:8px;padding:.7rem .9rem}
.card b{display:block;font-size:1.3rem;white-space:nowrap}
.card span{color:#5b6475;font-size:.85rem}
th.sort{cursor:pointer;user-select:none}th.sort:after{content:" \\2195";color:#9aa3b2}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{max-height:32rem;overflow:auto;border:1px solid #e6e9ef;border-radius:6px}
.matrix{width:auto}.matrix th{font-size:.72rem;padding:.2rem}
.matrix td{text-align:center;padding:.2rem;min-width:1.6rem;font-size:.78rem}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.8rem}
.shot{border:1px solid #e6e9ef;border-radius:8px;padding:.5rem;font-size:.85rem}
.shot img{width:140px;height:140px;object-fit:cover;margin:0 .2rem 0 0;border-radius:4px}
.shot .pics{display:flex}.shot ol{margin:.3rem 0 0 1.1rem;padding:0}
.miss{color:#8a1c12}.hit{color:#175c2c}
"""

# Clicking a header sorts its column (numbers numerically); no external script.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(t){t.querySelectorAll("th.sort")
.forEach(function(h,i){h.addEventListener("click",function(){var b=t.tBodies[0],r=Array.from(
b.rows),d=h.dataset.dir==="asc"?-1:1;h.dataset.dir=d===1?"asc":"desc";r.sort(function(x,y){var
p=x.cells[i].dataset.v||x.cells[i].textContent,q=y.cells[i].dataset.v||y.cells[i].textContent,
m=parseFloat(p),n=parseFloat(q);return(isNaN(m)||isNaN(n)?p.localeCompare(q):m-n)*d});r.forEach(
function(x){b.appendChild(x)})})})});
"""


def write_report(
    result: Scores, path: Path, *, explain: Any, gallery: int, top_pairs: int, title: str | None
) -> Path:
    """Write the report of ``result`` to ``path`` and return ``path``."""
    heading = title or "Evaluation"
    source = f" · {html.escape(result.source)}" if result.source else ""
    matrix = (
        _matrix(result)
        if len(result.class_ids) <= MATRIX_LIMIT
        else (
            f"<p class=meta>{len(result.class_ids)} classes: the full matrix is left out (it is "
            f"shown up to {MATRIX_LIMIT}); the most confused pairs above are its largest "
            "off-diagonal cells.</p>"
        )
    )
    body = f"""<h1>{html.escape(heading)}</h1>
<p class=meta>{result.images:,} images · {len(result.class_ids)} classes{source}</p>
<div id=summary>{_cards(result)}</div>
<h2 id=confused>Most confused classes</h2>{_pairs(result, top_pairs)}
<h2 id=gallery>Most confident mistakes</h2>{eval_gallery.section(result, explain, gallery)}
<h2 id=per-class>Per class</h2>{_per_class_table(result)}
<h2 id=matrix>Confusion matrix</h2>{matrix}
<h2 id=calibration>Calibration</h2>{_calibration(result)}
<h2 id=latency>Latency</h2>{_latency(result)}"""
    return write_page(path, heading, body, style=_EXTRA_STYLE, script=_SORT_SCRIPT)


def _cards(result: Scores) -> str:
    f1s = [scores["f1"] for scores in result.per_class.values()]
    cards = [
        (f"{result.accuracy:.2%}", "accuracy"),
        (f"{result.top_k_accuracy:.2%}", "top-k accuracy"),
        (f"{sum(f1s) / len(f1s):.3f}", "macro F1"),
        (f"{len(result.misclassified):,}", "misclassified"),
        (f"{result.expected_calibration_error:.3f}", "calibration error (ECE)"),
        (f"{result.latency_ms['p50']:.1f} ms", "latency p50"),
        (f"{result.latency_ms['p95']:.1f} ms", "latency p95"),
    ]
    return (
        "<div class=cards>"
        + "".join(
            f"<div class=card><b>{value}</b><span>{name}</span></div>" for value, name in cards
        )
        + "</div>"
    )


def _label(result: Scores, class_id: str) -> str:
    label = result.labels.get(class_id, class_id)
    return html.escape(label if label == class_id else f"{label} ({class_id})")


def _pairs(result: Scores, top: int) -> str:
    pairs = result.confused_pairs(top)
    if not pairs:
        return "<p>No mistakes: every image got its true class.</p>"
    support = {c: int(s["support"]) for c, s in result.per_class.items()}
    rows = "".join(
        f"<tr><td>{_label(result, true)}</td><td>{_label(result, guess)}</td>"
        f"<td class=num>{count}</td><td class=num>{count / max(support[true], 1):.1%}</td></tr>"
        for true, guess, count in pairs
    )
    return (
        "<table><tr><th>true class</th><th>predicted as</th><th class=num>images</th>"
        "<th class=num>share of the true class</th></tr>" + rows + "</table>"
    )


def _matrix(result: Scores) -> str:
    ids = result.class_ids
    head = "".join(f"<th title='{_label(result, c)}'>{html.escape(c[:10])}</th>" for c in ids)
    rows = []
    for i, row in enumerate(result.confusion):
        total = max(sum(row), 1)
        cells = "".join(_matrix_cell(count / total, count, i == j) for j, count in enumerate(row))
        rows.append(f"<tr><th>{html.escape(ids[i][:18])}</th>{cells}</tr>")
    return (
        "<p class=meta>Rows are true classes, columns predictions; a cell's colour is its "
        "share of the row.</p><div class=scroll><table class=matrix><tr><th>true \\ "
        f"predicted</th>{head}</tr>{''.join(rows)}</table></div>"
    )


def _matrix_cell(share: float, count: int, diagonal: bool) -> str:
    if not count:
        return "<td></td>"
    colour = (
        f"rgba(46,160,90,{0.15 + 0.75 * share:.2f})"
        if diagonal
        else f"rgba(214,69,65,{0.15 + 0.75 * share:.2f})"
    )
    return f"<td style='background:{colour}'>{count}</td>"


def _per_class_table(result: Scores) -> str:
    columns = ("precision", "recall", "f1", "support")
    ordered = sorted(result.per_class.items(), key=lambda item: (item[1]["f1"], item[0]))
    rows = "".join(
        f"<tr><td>{_label(result, class_id)}</td>"
        + "".join(
            f"<td class=num>{scores[c]:.0f}</td>"
            if c == "support"
            else f"<td class=num>{scores[c]:.3f}</td>"
            for c in columns
        )
        + "</tr>"
        for class_id, scores in ordered
    )
    head = "".join(f"<th class='sort num'>{c}</th>" for c in columns)
    return (
        "<p class=meta>Worst F1 first; click a header to sort.</p><div class=scroll>"
        f"<table class=sortable><thead><tr><th class=sort>class</th>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _calibration(result: Scores) -> str:
    ece = result.expected_calibration_error
    mean_confidence = sum(s.score for s in result.scored) / max(len(result.scored), 1)
    verdict = (
        "over-confident"
        if mean_confidence > result.accuracy + 0.02
        else "under-confident"
        if mean_confidence < result.accuracy - 0.02
        else "about as confident as it is accurate"
    )
    return (
        f"<p>Expected calibration error <b>{ece:.3f}</b>: the model's mean confidence "
        f"is {mean_confidence:.1%} against an accuracy of {result.accuracy:.1%} "
        f"({verdict}). Bars below the diagonal are confidence the model has not earned."
        f"</p>{inline_png(eval_plots.reliability_diagram(result), alt='reliability')}"
    )


def _latency(result: Scores) -> str:
    figures = ", ".join(f"{name} {value:.1f} ms" for name, value in result.latency_ms.items())
    return (
        f"<p>One image per request: {figures}.</p>"
        f"{inline_png(eval_plots.latency_histogram(result), alt='latency')}"
    )
