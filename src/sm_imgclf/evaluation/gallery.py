"""The report's gallery: misclassified images, most confident first, with heatmaps when asked."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from sm_imgclf.evaluation.explain import Explanation
    from sm_imgclf.evaluation.scores import ScoredImage, Scores

THUMBNAIL = 280  # pixels; shown at half size, so they stay sharp on dense screens


def section(result: Scores, explain: Any, count: int) -> str:
    """The gallery's HTML: up to ``count`` mistakes, heatmaps from ``explain`` if given."""
    mistakes = sorted(
        (s for s in result.scored if not s.correct), key=lambda s: (-s.score, s.path)
    )[: max(count, 0)]
    if not mistakes:
        return (
            "<p>No mistakes to show.</p>"
            if not result.misclassified
            else f"<p class=meta>{len(result.misclassified):,} misclassified images; the gallery "
            "is turned off (gallery=0).</p>"
        )
    explanations = _explanations(mistakes, explain) if explain is not None else None
    intro = (
        _method_note(explanations[0])
        if explanations
        else "<p class=meta>Pass <code>explain=</code> (the training job or its model package) "
        "to see where the model looked.</p>"
    )
    cards = [
        _card(result, item, explanations[i] if explanations else None)
        for i, item in enumerate(mistakes)
    ]
    total = len(result.misclassified)
    shown = f"{len(mistakes)} of {total}" if total > len(mistakes) else f"all {total}"
    return (
        f"<p class=meta>Showing {shown} misclassified images, the most confident "
        f"mistakes first.</p>{intro}<div class=gallery>{''.join(cards)}</div>"
    )


def _explanations(mistakes: list[ScoredImage], explain: Any) -> list[Explanation]:
    from sm_imgclf.evaluation.explain import ModelExplainer

    if isinstance(explain, ModelExplainer):
        return explain.explain([m.path for m in mistakes], classes=[m.predicted for m in mistakes])
    with ModelExplainer(explain) as explainer:
        return explainer.explain(
            [m.path for m in mistakes], classes=[m.predicted for m in mistakes]
        )


def _method_note(first: Explanation) -> str:
    if first.method == "grad-cam":
        how = (
            f"Grad-CAM on <code>{html.escape(first.layer or '')}</code>, the model's last "
            "spatial feature map"
        )
    else:
        how = "gradients of the class score with respect to the input pixels"
    return (
        f"<p class=meta>Heatmaps show where the model looked for the class it predicted "
        f"({how}); red is most, blue least.</p>"
    )


def _card(result: Scores, item: ScoredImage, explanation: Explanation | None) -> str:
    from PIL import Image

    with Image.open(item.path) as opened:
        pictures = [_img(opened.convert("RGB"), item.path)]
    if explanation is not None:
        pictures.append(_img(explanation.overlay(), "heatmap of " + item.path))
    label = result.labels.get
    ranked = "".join(
        f"<li class={'hit' if class_id == item.true else 'miss' if i == 0 else 'other'}>"
        f"{html.escape(name)} {score:.1%}</li>"
        for i, (class_id, name, score) in enumerate(item.top_k)
    )
    return (
        f"<div class=shot><div class=pics>{''.join(pictures)}</div>"
        f"<div><b class=miss>{html.escape(label(item.predicted, item.predicted))}</b> "
        f"{item.score:.1%}, truly <b class=hit>{html.escape(label(item.true, item.true))}"
        f"</b></div><ol>{ranked}</ol><div class=meta title='{html.escape(item.path)}'>"
        f"{html.escape(_short(item.path))}</div></div>"
    )


def _img(image: Image.Image, alt: str) -> str:
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{data}">'


def _short(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])
