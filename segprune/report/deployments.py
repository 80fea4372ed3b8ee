"""The balance point across runtimes and precisions: per network, the fastest deployment that keeps Dice."""

from __future__ import annotations

import html

from segprune.report.tables import best_deployments

_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "litert": "LiteRT"}


def deployment_section(rows: list[dict], tolerance: float) -> str:
    """An HTML section: every deployment of every network, the fastest within `tolerance` Dice points marked.

    Empty when the sweep timed one runtime at one precision only (the main table already says it all).
    """
    settings = {(d["runtime"], d["precision"]) for row in rows for d in row.get("deployments") or []}
    if len(settings) < 2:
        return ""
    chosen = {(entry["method"], entry["budget"]): entry["deployment"] for entry in best_deployments(rows, tolerance)}
    body = []
    for row in rows:
        best = chosen.get((row["method"], row["budget"]))
        for deployment in row.get("deployments") or []:
            marked = deployment is best
            cells = [
                row["method"] if row["budget"] is None else f"{row['method']} at {row['budget']:g}",
                _RUNTIME_NAMES.get(deployment["runtime"], deployment["runtime"]),
                deployment["precision"],
                deployment.get("executed_precision", "not read"),  # sweeps before segprune named it
                f"{deployment['latency_ms']:.2f}",
                _times(deployment.get("speedup_vs_reference")),
                _times(deployment.get("speedup_vs_dense_same_runtime")),
                f"{deployment['dice']:.4f}",
                f"{100 * deployment['mask_agreement']:.2f}%",
                _share(deployment.get("gmacs_per_second"), deployment.get("peak_share")),
                "fastest within tolerance" if marked else "",
            ]
            css = ' class="balance"' if marked else ""
            body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    header = "".join(
        f"<th>{label}</th>"
        for label in ("network", "runtime", "precision", "ran in", "ms", "vs dense fp32 on ONNX Runtime", "vs dense, same runtime",
                      "Dice", "mask agreement", "GMAC/s (of peak)", "")
    )
    return (
        '<h2 id="deployments">Runtimes and precisions</h2>'
        f"<p>Every network exported at a fixed shape and timed on each runtime (interleaved per runtime). "
        f"'vs dense fp32 on ONNX Runtime' is what a user deploying the dense model today would gain; 'vs dense, same "
        f"runtime' is what pruning itself bought. 'ran in' is the precision the runtime reports it executed (OpenVINO's "
        f"compiled inference precision; int8 with the float precision of the layers left unquantized), and the achieved GMAC/s "
        f"is shown with its share of this CPU's peak at that precision. Marked: each network's fastest deployment within {tolerance:g} Dice "
        f"points of the dense model.</p><table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _share(gmacs: float | None, share: float | None) -> str:
    if gmacs is None:
        return "-"
    return f"{gmacs:.1f}" if share is None else f"{gmacs:.1f} ({100 * share:.0f}%)"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def optimized_section(card: dict | None) -> str:
    """An HTML section: the deployment row `segprune optimize` produced (its model card), or nothing without one."""
    if not card:
        return ""
    chosen, score, latency, throughput = card["chosen"], card["score"], card["latency"], card["throughput"]
    what = f"{chosen['method']} at {chosen['budget']:g}" if chosen.get("pruned") else "dense"
    low, high = score["loss_interval"]
    cells = [
        what,
        _RUNTIME_NAMES.get(card["runtime"], card["runtime"]),
        f"{chosen['precision']} ({chosen['executed_precision']})",
        f"{latency['ms']:.2f}",
        _times(latency["speedup_vs_onnxruntime_fp32"]),
        _times(latency["speedup_vs_dense_same_runtime"]),
        f"{throughput['images_per_second']:.1f}",
        "{:.4f} [{:.4f}, {:.4f}]".format(score["dice"], *score["dice_interval"]),
        f"{100 * score['loss']:.2f} [{100 * low:.2f}, {100 * high:.2f}]",
        f"{card['macs_ratio']:.3f}",
        chosen["file"],
    ]
    header = "".join(
        f"<th>{label}</th>"
        for label in ("network", "runtime", "precision (ran in)", "ms", "vs dense fp32 on ONNX Runtime", "vs dense, same runtime", "images/s",
                      "Dice [95%]", "Dice lost, points [95% paired]", "MACs", "file")
    )
    verdict = "met" if card["goal_met"] else "not met"
    return (
        '<h2 id="deployed">Deployed by segprune optimize</h2>'
        f"<p>{html.escape(card['why'])} Goal {html.escape(card['goal'])}: {verdict}. Scored on {score['num_images']} test images at the "
        f"file's fixed input shape, the loss paired against the dense fp32 file; timed beside the dense model on the same runtime and on ONNX "
        f"Runtime fp32 in one interleaved run. The model card (model_card.md, with the commands that reproduce it) is in the deploy folder.</p>"
        f"<table><thead><tr>{header}</tr></thead><tbody><tr class=\"balance\">"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr></tbody></table>"
    )
