"""The page and chart helpers both HTML reports (checks, evaluation) draw with."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:980px;
color:#1d2330;padding:0 1rem}h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid
#dde2ea;padding-bottom:.3rem}.verdict{padding:1rem 1.2rem;border-radius:8px;margin:1rem 0;
font-size:1.05rem}.ok{background:#e7f6ec;border:1px solid #8fd3a5}.bad{background:#fdecea;border:
1px solid #f1a39b}table{border-collapse:collapse;width:100%;font-size:.92rem}th,td{text-align:
left;padding:.45rem .6rem;border-bottom:1px solid #e6e9ef;vertical-align:top}th{background:
#f4f6f9}.tag{font-weight:600;border-radius:4px;padding:.1rem .45rem;font-size:.8rem}.fired{
background:#f9d3cf;color:#8a1c12}.clear{background:#d4efdc;color:#175c2c}img{max-width:100%;
border:1px solid #e6e9ef;border-radius:6px;margin:.5rem 0}.meta{color:#5b6475}
"""


def figure(width: float = 8.0, height: float = 3.6) -> tuple[Any, Any]:
    """A new figure and axes on the file-only backend."""
    from sm_imgclf._lazy import require

    require("matplotlib", extra="plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def finish(fig: Any, ax: Any, title: str, path: str | Path | None) -> Any:
    """Title, grid, layout; save when ``path`` is given."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def inline_png(fig: Any, *, alt: str = "chart", dpi: int = 90) -> str:
    """An ``<img>`` tag holding ``fig`` as a base64 PNG (the figure is closed)."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def write_page(path: Path, title: str, body: str, *, style: str = "", script: str = "") -> Path:
    """Write a self-contained HTML page (the reports' shared style plus ``style``)."""
    tail = f"<script>{script}</script>" if script else ""
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
        f"{html.escape(title)}</title><style>{STYLE}{style}</style></head>"
        f"<body>{body}{tail}</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
