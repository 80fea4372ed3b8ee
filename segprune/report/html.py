"""A self-contained HTML report of a sweep: table, Pareto plots, overlays and the balance point."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from segprune._io import write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.balance { background: #fff6cc; font-weight: bold; }
img { max-width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
"""

# Marks the page once every figure has decoded, so a headless browser can check that it rendered.
_RENDER_CHECK = """
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const ok = images.length > 0 && images.every(image => image.complete && image.naturalWidth > 0);
  document.body.setAttribute('data-figures', ok ? 'rendered' : 'broken');
  document.body.setAttribute('data-figure-count', String(images.length));
});
"""

_COLUMNS = [
    ("method", "method", str),
    ("budget", "MACs budget", lambda v: "-" if v is None else f"{v:g}"),
    ("dice", "Dice", lambda v: f"{v:.4f}"),
    ("iou", "IoU", lambda v: f"{v:.4f}"),
    ("macs_ratio", "MACs", lambda v: "-" if v is None else f"{v:.3f}"),
    ("params", "params", lambda v: "-" if v is None else f"{v:,}"),
    ("latency_ms", "ONNX ms", lambda v: "-" if v is None else f"{v:.2f}"),
    ("speedup", "speed-up", lambda v: "-" if v is None else f"{v:.2f}x"),
    ("classical_ms_per_image", "classical ms", lambda v: "-" if v is None else f"{v:.1f}"),
]


def write_report(path: str | Path, title: str, rows: list[dict], balance: dict | None, tolerance: float, figures: dict[str, bytes]) -> Path:
    """Writes the report (figures embedded as base64 PNG) atomically; returns its path."""
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in _COLUMNS)
    body = []
    for row in rows:
        css = ' class="balance"' if row is balance else ""
        cells = "".join(f"<td>{html.escape(render(row.get(key)))}</td>" for key, _, render in _COLUMNS)
        body.append(f"<tr{css}>{cells}</tr>")
    if balance is not None and balance["method"] == "dense":
        verdict = f"<p><b>Balance point</b>: no pruned network stays within {tolerance:g} Dice points of dense; the dense model remains the balance point.</p>"
    elif balance is not None:
        verdict = (
            f"<p><b>Balance point</b>: <code>{html.escape(balance['method'])}</code> at MACs budget {balance['budget']}, "
            f"Dice {balance['dice']:.4f}, {balance['latency_ms']:.2f} ms ({balance['speedup']:.2f}x the dense model): "
            f"the fastest network within {tolerance:g} Dice points of dense.</p>"
        )
    else:
        verdict = f"<p>No network stays within {tolerance:g} Dice points of dense.</p>"
    pictures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in figures.items()
    )
    caveat = ""
    if any(row.get("foreground_only") for row in rows):
        caveat = (" On this multi-class dataset the classical methods only separate foreground from background, so "
                  "their Dice is over that binary split, not the per-class mean the networks are scored on.")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{verdict}
<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>
<p>Latency: ONNX Runtime, interleaved rounds, median. Classical rows are timed by their own Python code and
do not run on ONNX Runtime.{caveat}</p>
<div class="figures">{pictures}</div>
<script>{_RENDER_CHECK}</script>
</body></html>
"""
    path = Path(path)
    write_text(path, page)
    return path


def build_report(rows: list[dict], data, out_dir: str | Path, tolerance: float, title: str) -> tuple[Path, dict | None]:
    """Plots and overlays for a finished sweep, written with the table into `out_dir/report.html`.

    Returns:
        The report's path and the balance point row (None if no network is within tolerance).
    """
    from segprune.report.plots import overlays, pareto_plot
    from segprune.report.sweep import balance_point

    balance = balance_point(rows, tolerance)
    figures = {
        "Dice vs ONNX Runtime latency (ms)": pareto_plot(rows, "latency_ms", "latency (ms, ONNX Runtime)", balance),
        "Dice vs MACs (fraction of dense)": pareto_plot(rows, "macs_ratio", "MACs (fraction of dense)", balance),
        "Predictions on test images": overlays(rows, data),
    }
    path = write_report(Path(out_dir) / "report.html", title, rows, balance, tolerance, figures)
    return path, balance
