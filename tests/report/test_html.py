"""The report opens with the balance point in one plain sentence and notes every row not to take at face value."""

import io
from types import SimpleNamespace

import numpy as np
from PIL import Image

from segprune.data.dataset import SegmentationDataset
from segprune.report.html import balance_sentence, fine_tuning, measurement_note, row_notes, write_report
from segprune.report.plots import FALSE_NEGATIVE, FALSE_POSITIVE, error_masks, overlays


def _row(method, budget, dice, macs_ratio=None, speedup=None, **extra):
    latency = None if speedup is None else 20.0 / speedup
    row = {"method": method, "budget": budget, "dice": dice, "iou": dice - 0.05, "macs_ratio": macs_ratio, "params": 1000,
           "latency_ms": latency, "speedup": speedup, "classical_ms_per_image": None,
           "model_path": None if method.startswith("classical-") else f"{method}-{budget}.keras"}
    row.update(extra)
    return row


def _rows():
    return [
        _row("dense", None, 0.949, 1.0, 1.0),
        _row("oneshot-l1", 0.5, 0.945, 0.49, 1.9, finetune_epochs=10, finetune_seconds=31.0, distilled=True),
        _row("oneshot-l1", 0.125, 0.61, 0.12, 3.5, finetune_epochs=5, finetune_seconds=9.0, distilled=True),
        _row("classical-watershed", None, 0.0),
    ]


def _png():
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(buffer, format="png")
    return buffer.getvalue()


def test_balance_point_reads_as_one_plain_sentence():
    rows = _rows()
    sentence, detail = balance_sentence(rows, rows[1], tolerance=1.0)
    assert sentence == "Half the computation, 1.9x faster on this CPU, Dice 0.945 instead of 0.949."
    assert detail.startswith("the fastest network within 1 Dice point of the full model: one-shot L1 pruning at a MACs "
                             "budget of 0.5, fine-tuned 10 epochs, 31 s, distilled.")


def test_when_only_the_dense_model_balances_the_sentence_says_so_and_names_the_best_pruned_one():
    rows = _rows()[:1] + [_row("oneshot-l1", 0.25, 0.90, 0.25, 2.6, finetune_epochs=5)]
    sentence, _ = balance_sentence(rows, rows[0], tolerance=1.0)
    assert sentence.startswith("No smaller network kept the full model's accuracy")
    assert "a quarter of the computation" in sentence and "2.6x faster" in sentence and "0.900 instead of 0.949" in sentence


def test_collapsed_and_empty_rows_carry_notes():
    rows = _rows()
    assert row_notes(rows[1], 0.949) == []
    collapsed = row_notes(rows[2], 0.949)
    assert len(collapsed) == 1 and "collapsed: 33.9 Dice points below" in collapsed[0] and "5 epochs" in collapsed[0]
    assert "found no foreground" in row_notes(rows[3], 0.949)[0]
    assert row_notes(_row("oneshot-l1", 0.25, 0.95, notes=["gates closed"]), 0.949) == ["gates closed"]


def test_the_sentence_comes_before_the_table_and_the_figures(tmp_path):
    rows = _rows()
    page = write_report(tmp_path / "report.html", "demo", rows, rows[1], 1.0, {"plot": _png()}).read_text()
    sentence_at = page.index("Half the computation, 1.9x faster on this CPU")
    assert sentence_at < page.index("<table") < page.index("<img")
    assert page.count('class="balance"') == 1
    assert "10 epochs, 31 s, distilled" in page and "collapsed" in page and "found no foreground" in page


def test_a_searched_rows_cost_counts_its_search_and_columns_empty_on_every_row_are_dropped(tmp_path):
    rows = _rows()[:2] + [_row("greedy", 0.25, 0.94, 0.25, 2.5, finetune_epochs=5, finetune_seconds=9.0, search_seconds=47.0)]
    for row in rows:
        row["image_size"] = 128
    assert fine_tuning(rows[2]) == "5 epochs, 9 s after a 47 s search (56 s)"
    assert fine_tuning(_row("greedy", 0.5, 0.9, search_seconds=30.0)) == "none after a 30 s search"
    page = write_report(tmp_path / "report.html", "demo", rows, rows[1], 1.0, {"plot": _png()}, measured="Accuracy on the 2 test images").read_text()
    header = page.split("<thead>")[1].split("</thead>")[0]
    assert "classical ms" not in header, "no classical method ran: its column would be dashes only"
    assert "<th>MACs at 128x128</th>" in header and "<th>ONNX ms at 128x128</th>" in header
    assert "fine-tuning (after search)" in header and "5 epochs, 9 s after a 47 s search (56 s)" in page
    assert 'id="measured">Accuracy on the 2 test images' in page
    rows.append(_row("classical-otsu", None, 0.7, classical_ms_per_image=3.0))
    assert "<th>classical ms</th>" in write_report(tmp_path / "report.html", "demo", rows, rows[1], 1.0, {}).read_text()


def test_the_report_says_how_many_test_images_how_the_data_was_split_and_at_which_size_it_measured():
    data = SimpleNamespace(name="nuclei", splits={"train": list("abcdefghij"), "val": ["k", "l"], "test": ["m", "n"]})
    note = measurement_note([{"method": "dense", "image_size": 128}], data)
    assert note.startswith("Accuracy on the 2 test images of nuclei (split: 10 train, 2 val, 2 test images;")
    assert note.endswith("MACs and latency per 1x128x128 input image.")


def test_errors_are_false_positives_false_negatives_and_wrong_classes_ignored_pixels_none():
    truth = np.array([[0, 1, 2, 255], [0, 1, 0, 2]])
    prediction = np.array([[1, 0, 1, 1], [0, 1, 0, 2]])
    errors = error_masks(prediction, truth, ignore_index=255)
    assert errors["false_positive"].tolist() == [[True, False, False, False], [False, False, False, False]]
    assert errors["false_negative"].tolist() == [[False, True, False, False], [False, False, False, False]]
    assert errors["wrong_class"].tolist() == [[False, False, True, False], [False, False, False, False]]
    assert not error_masks(prediction, truth, 255, binary=True)["wrong_class"].any(), "a 0/1 classical mask is only foreground"


def test_overlays_paint_false_positives_and_false_negatives_in_their_colours():
    """A bright square half over the true one: Otsu marks it all, so half of it is a false positive and the
    rest of the true square a false negative, each painted opaque in its own colour."""
    image, mask = np.zeros((32, 32, 1), np.float32), np.zeros((32, 32), np.int32)
    image[8:24, 12:28] = 1.0
    mask[8:24, 4:20] = 1
    data = SegmentationDataset("square", 2, 1, {"test": ["a"]}, lambda _: (image, mask))
    png = overlays([{"method": "classical-otsu", "budget": None, "model_path": None}], data, num_images=1)
    colours = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    painted = {name: (np.abs(colours - np.array(colour) * 255).max(axis=2) <= 2).sum()
               for name, colour in (("false positive", FALSE_POSITIVE), ("false negative", FALSE_NEGATIVE))}
    # each error is an 8x16 band, drawn ~6 pixels per mask pixel wide: thousands of pixels, beside a legend swatch of ~150
    assert painted["false positive"] > 1000 and painted["false negative"] > 1000, painted
