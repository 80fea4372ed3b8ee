"""A self-contained HTML report of a sweep: the balance point in one sentence, the table, Pareto plots, overlays."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from segprune._io import write_text
from segprune.report.deployments import deployment_section, optimized_section
from segprune.report.instances import instance_section
from segprune.report.tables import indistinguishable_from_dense, loss_interval, undecided_rows
from segprune.sizes import format_size

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
h1 { font-size: 1.4em; margin-bottom: 0.4em; }
p.headline { font-size: 1.6em; line-height: 1.3; margin: 0.2em 0 0.3em 0; }
p.detail { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th:first-child, td:first-child, th.note { text-align: left; }
td.note { text-align: left; color: #8a3b00; max-width: 28em; }
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

# A pruned network below this Dice has collapsed rather than traded a little accuracy; its row says why.
COLLAPSE_DICE = 0.85

_FRACTIONS = {1 / 2: "half", 1 / 3: "a third of", 1 / 4: "a quarter of", 1 / 8: "an eighth of"}


def fine_tuning(row: dict) -> str:
    """What a row cost after pruning, as the report shows it: "10 epochs, 31 s, distilled", "none" or "-"; a searched
    row adds its search, which is most of its cost: "5 epochs, 9 s after a 47 s search (56 s)"."""
    epochs = row.get("finetune_epochs")
    if row["method"] == "dense" or row["method"].startswith("classical-"):
        return "-"
    seconds = row.get("finetune_seconds")
    text = f"{epochs} epochs" + (f", {seconds:.0f} s" if seconds is not None else "") if epochs else "none"
    text += ", distilled" if epochs and row.get("distilled") else ""
    search = row.get("search_seconds")
    if search:
        text = (f"{text} after a {search:.0f} s search" if epochs else f"none after a {search:.0f} s search")
        text += f" ({search + (seconds or 0.0):.0f} s)" if epochs and seconds is not None else ""
    return text


def _shown_columns(rows: list[dict]) -> list[tuple[str, str, object]]:
    """The table's columns that say something: one that reads "-" on every row (a "classical ms" column when no
    classical method ran) is dropped; MACs and latency name the input size they were measured at."""
    size = next((row["image_size"] for row in rows if row.get("image_size")), None)
    sized = {"macs_ratio": "MACs", "latency_ms": "ONNX ms"}
    shown = []
    for key, label, render in _COLUMNS:
        if all(row.get(key) is None or render(row.get(key)) == "-" for row in rows):
            continue
        if key in sized and size is not None:
            label = f"{sized[key]} at {format_size(size)}"
        shown.append((key, label, render))
    return shown


def measurement_note(rows: list[dict], data) -> str:
    """What the figures were measured on: the test images and how the data was split, the input size of MACs and latency.

    Example:
        >>> measurement_note(rows, segprune.load_data("nuclei"))
        'Accuracy on the 4 test images of nuclei (split: 10 train, 2 val, 4 test images; ...'
    """
    splits = {name: len(ids) for name, ids in data.splits.items() if len(ids)}
    split = ", ".join(f"{count} {name}" for name, count in splits.items())
    test = splits.get("test", 0)
    words = (f"Accuracy on the {test} test image{'s' if test != 1 else ''} of {data.name} (split: {split} images; every row is scored on "
             "the same test images, which no network trained on or was chosen by: fine-tuning keeps the epoch with the best validation Dice).")
    size = next((row["image_size"] for row in rows if row.get("image_size")), None)
    if size is not None:
        words += f" MACs and latency per 1x{format_size(size)} input image."
    return words


_COLUMNS = [
    ("method", "method", str),
    ("budget", "MACs budget", lambda v: "-" if v is None else f"{v:g}"),
    ("dice", "Dice", lambda v: f"{v:.4f}"),
    ("dice_interval", "Dice 95%", lambda v: "-" if not v or None in v else f"[{v[0]:.4f}, {v[1]:.4f}]"),
    ("dice_loss", "Dice lost (points)", lambda v: "-" if v is None else f"{100 * v:.2f}"),
    ("dice_loss_interval", "lost, 95% paired", lambda v: "-" if not v or None in v else f"[{100 * v[0]:.2f}, {100 * v[1]:.2f}]"),
    ("iou", "IoU", lambda v: f"{v:.4f}"),
    ("macs_ratio", "MACs", lambda v: "-" if v is None else f"{v:.3f}"),
    ("params", "params", lambda v: "-" if v is None else f"{v:,}"),
    ("latency_ms", "ONNX ms", lambda v: "-" if v is None else f"{v:.2f}"),
    ("speedup", "speed-up", lambda v: "-" if v is None else f"{v:.2f}x"),
    ("classical_ms_per_image", "classical ms", lambda v: "-" if v is None else f"{v:.1f}"),
]


def _share_of_computation(macs_ratio: float) -> str:
    for fraction, words in _FRACTIONS.items():
        if abs(macs_ratio - fraction) <= 0.06 * fraction + 0.005:
            return f"{words} the computation"
    return f"{macs_ratio:.0%} of the computation"


def _speed(speedup: float | None) -> str:
    if speedup is None:
        return "speed not measured"
    if speedup >= 1.05:
        return f"{speedup:.1f}x faster on this CPU"
    return "no faster on this CPU"


def _method_words(method: str) -> str:
    if method.startswith("oneshot-"):
        criterion = method.removeprefix("oneshot-")
        return f"one-shot {criterion.upper() if criterion in ('l1', 'l2') else criterion} pruning"
    return method.replace("-", " ")


def _points(tolerance: float) -> str:
    return f"{tolerance:g} Dice point" + ("" if tolerance == 1 else "s")


def _what(row: dict) -> str:
    budget = "" if row.get("budget") is None else f" at a MACs budget of {row['budget']:g}"
    return _method_words(row["method"]) + budget


def _how(row: dict) -> str:
    tuning = fine_tuning(row)
    return _what(row) + ("" if tuning == "-" else f", fine-tuned {tuning}")


def balance_sentence(rows: list[dict], balance: dict | None, tolerance: float) -> tuple[str, str]:
    """The report's first words: the balance point in plain language, and one line on how it was made.

    Where the rows carry intervals (a bootstrap over the test images), every Dice has its 95% interval and the
    pruned network's loss its paired interval; the detail says which faster networks the test images cannot
    tell apart from the tolerance, and when the balance point cannot be told apart from the full model.

    Example:
        >>> balance_sentence(rows, balance, 1.0)[0]
        'Half the computation, 1.9x faster on this CPU, Dice 0.945 [0.938, 0.951] instead of 0.949 [0.942, 0.955]: 0.4 Dice points lost (95% interval 0.1 to 0.8, paired over the same 4 test images).'
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    pruned = [row for row in rows if row.get("model_path") and row["method"] != "dense" and row.get("macs_ratio") is not None]
    explain = "Dice measures how well the predicted masks overlap the hand-drawn ones on the test images (1 is perfect)."
    if dense is None or not pruned:
        return "No pruned network was measured.", explain
    if any(loss_interval(row) is not None for row in pruned):
        explain += (" [low, high]: 95% intervals from a bootstrap over the test images; a loss interval is paired (both models "
                    "scored on the same resampled images), and a network counts as within tolerance only if its whole interval is.")
    undecided = _undecided_words(undecided_rows(rows, balance, tolerance), tolerance)
    if balance is not None and balance is not dense and balance["method"] != "dense":
        words = f"{_share_of_computation(balance['macs_ratio'])}, {_speed(balance.get('speedup'))}, "
        words += f"Dice {_dice(balance)} instead of {_dice(dense)}{_loss_words(balance)}."
        detail = f"the fastest network within {_points(tolerance)} of the full model: {_how(balance)}."
        if indistinguishable_from_dense(balance):
            detail += " Its loss interval holds zero: on these test images it cannot be told apart from the full model."
        return words[0].upper() + words[1:], f"{detail}{undecided} {explain}"
    best = max(pruned, key=lambda row: row["dice"])
    words = (f"No smaller network kept the full model's accuracy: the best one needs {_share_of_computation(best['macs_ratio'])}, "
             f"is {_speed(best.get('speedup'))} and scores Dice {_dice(best)} instead of {_dice(dense)}{_loss_words(best)}.")
    return words, f"the full model (no pruned network surely within {_points(tolerance)}); the best pruned one: {_how(best)}.{undecided} {explain}"


def _dice(row: dict) -> str:
    interval = row.get("dice_interval")
    if not interval or None in interval:
        return f"{row['dice']:.3f}"
    return f"{row['dice']:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _loss_words(row: dict) -> str:
    interval = loss_interval(row)
    if interval is None or row.get("dice_loss") is None:
        return ""
    images = f" {row['num_images']}" if row.get("num_images") else ""
    return (f": {100 * row['dice_loss']:.1f} Dice points lost (95% interval {100 * interval[0]:.1f} to {100 * interval[1]:.1f}, "
            f"paired over the same{images} test images)")


def _undecided_words(rows: list[dict], tolerance: float) -> str:
    """A sentence naming the faster networks whose loss interval crosses the tolerance, or nothing."""
    if not rows:
        return ""
    named = "; ".join(
        f"{_what(row)} ({row['latency_ms']:.2f} ms, loss {100 * row['dice_loss']:.1f} points, "
        f"interval {100 * loss_interval(row)[0]:.1f} to {100 * loss_interval(row)[1]:.1f})"
        for row in rows
    )
    return (f" Cannot be told apart from the tolerance: {named}: faster, but the test images cannot say whether "
            f"{'it' if len(rows) == 1 else 'they'} lost less than {_points(tolerance)}, so {'it is' if len(rows) == 1 else 'they are'} not chosen.")


def row_notes(row: dict, dense_dice: float | None) -> list[str]:
    """What a reader must know next to a row's figure: why a network collapsed, that a method found nothing."""
    notes = list(row.get("notes") or [])
    if row["method"].startswith("classical-"):
        if row.get("found_nothing") or row["dice"] <= 0.0:
            notes.append("found no foreground on the test images: this method does not work on this data")
        elif row["dice"] < COLLAPSE_DICE:
            notes.append("fixed rules, no training: a baseline, not a pruned network")
    elif row["method"] != "dense" and row["dice"] < COLLAPSE_DICE:
        lost = "" if dense_dice is None else f"{100 * (dense_dice - row['dice']):.1f} Dice points below the full model; "
        epochs = row.get("finetune_epochs")
        tuning = "no fine-tuning" if not epochs else f"{epochs} epochs of fine-tuning"
        notes.append(f"collapsed: {lost}removing this many channels lost more than {tuning} could restore "
                     "(a larger budget or longer fine-tuning recovers it)")
    return notes


def write_report(
    path: str | Path, title: str, rows: list[dict], balance: dict | None, tolerance: float, figures: dict[str, bytes],
    instance_rows: Sequence[dict] = (), instance_notes: Sequence[str] = (), measured: str = "", deployed: dict | None = None,
) -> Path:
    """Writes the report (figures embedded as base64 PNG) atomically; returns its path.

    The page opens with the balance point in one plain sentence, then `measured` (what the figures were measured
    on: see `measurement_note`), the table (with how long each row fine-tuned and searched, and a note on every
    row a reader should not take at face value; columns empty on every row are left out), the instance rows when
    there are any (with `instance_notes`, e.g. which rows were not run and how to add them), then the figures. `deployed`
    (a `segprune optimize` model card) adds its deployment row after the runtimes and precisions.
    """
    dense = next((row for row in rows if row["method"] == "dense"), None)
    dense_dice = None if dense is None else dense["dice"]
    columns = _shown_columns(rows)
    tuning = "fine-tuning (after search)" if any(row.get("search_seconds") for row in rows) else "fine-tuning"
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns) + f'<th>{tuning}</th><th class="note">note</th>'
    body = []
    for row in rows:
        css = ' class="balance"' if row is balance else ""
        cells = "".join(f"<td>{html.escape(render(row.get(key)))}</td>" for key, _, render in columns)
        cells += f"<td>{html.escape(fine_tuning(row))}</td>"
        cells += f'<td class="note">{html.escape("; ".join(row_notes(row, dense_dice)))}</td>'
        body.append(f"<tr{css}>{cells}</tr>")
    sentence, detail = balance_sentence(rows, balance, tolerance)
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
<p class="headline" id="balance-sentence">{html.escape(sentence)}</p>
<p class="detail"><b>Balance point</b>: {html.escape(detail)}</p>
<p class="detail" id="measured">{html.escape(measured)}</p>
<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>
{deployment_section(rows, tolerance)}
{optimized_section(deployed)}
<p>Latency: the first runtime timed (ONNX Runtime by default), fixed input shape, interleaved rounds, median. Classical rows are timed by their own Python code and
do not run on ONNX Runtime. MACs: multiply-accumulates per image, as a fraction of the full model.{caveat}</p>
{instance_section(instance_rows, instance_notes)}
<div class="figures">{pictures}</div>
<script>{_RENDER_CHECK}</script>
</body></html>
"""
    path = Path(path)
    write_text(path, page)
    return path


def build_report(
    rows: list[dict], data, out_dir: str | Path, tolerance: float, title: str, instance_rows: Sequence[dict] = (),
    instance_notes: Sequence[str] = (), deployed: dict | None = None,
) -> tuple[Path, dict | None]:
    """Plots and overlays for a finished sweep, written with the table into `out_dir/report.html`.

    With `instance_rows` (from `segprune.experiments.run_instance_sweep`) the report adds their table and the
    objects' outlines on test tiles, read from the label images saved beside the rows. With `deployed` (a
    `segprune optimize` model card) the report ends its tables with that deployment row.

    Returns:
        The report's path and the balance point row (None if no network is within tolerance).
    """
    from segprune.report.instances import instance_outlines
    from segprune.report.plots import overlays, pareto_plot
    from segprune.report.tables import balance_point

    balance = balance_point(rows, tolerance)
    size = next((f" at 1x{format_size(row['image_size'])}" for row in rows if row.get("image_size")), "")  # rows store "HxW" (older ones N)
    figures = {
        f"Dice vs ONNX Runtime latency (ms{size})": pareto_plot(rows, "latency_ms", f"latency (ms, ONNX Runtime{size})", balance),
        f"Dice vs MACs (fraction of dense{size})": pareto_plot(rows, "macs_ratio", f"MACs (fraction of dense{size})", balance),
        "Predictions on test images: errors in magenta (false positives) and cyan (false negatives)": overlays(rows, data),
    }
    if instance_rows:
        figures["Objects outlined on test tiles, each in its own colour"] = instance_outlines(instance_rows, Path(instance_rows[0]["labels_path"]).parent)
    path = write_report(
        Path(out_dir) / "report.html", title, rows, balance, tolerance, figures, instance_rows, instance_notes, measurement_note(rows, data), deployed
    )
    return path, balance
