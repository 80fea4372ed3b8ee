"""`segprune train --model mask-rcnn`, `segprune evaluate` on a Mask R-CNN file, and the inputs they refuse."""

import json

import numpy as np
import pytest

from segprune.cli import main
from segprune.models.mask_rcnn import MaskRCNN, load_mask_rcnn
from tests.conftest import write_png
from tests.fixtures import one_error

TINY = ["--epochs", "2", "--steps-per-epoch", "1", "--batch-size", "1"]


def _write_instances(root, count=6, size=32, instance_size=None):
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 40, (size, size), dtype=np.uint8)
        labels = np.zeros((instance_size or size,) * 2, np.uint16)
        for object_id, (top, left) in enumerate(rng.integers(2, size - 12, (2, 2)), start=1):
            labels[top : top + 8, left : left + 8] = object_id
            image[top : top + 8, left : left + 8] = 200
        write_png(root / "images" / f"t{index}.png", image)
        write_png(root / "instances" / f"t{index}.png", labels)
    (root / "split.txt").write_text("".join(f"{'test' if index >= count - 2 else 'train'} t{index}\n" for index in range(count)))
    return root


def test_train_keeps_the_best_epoch_by_mask_ap_then_evaluate_reports_it(tmp_path, capsys):
    root = _write_instances(tmp_path / "cells")
    out = tmp_path / "runs" / "detector.keras"
    assert main(["train", "--data", str(root), "--model", "mask-rcnn", *TINY, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "epoch   1/2" in captured.err and "epoch   2/2" in captured.err and "val mask AP" in captured.err
    assert "test mask AP" in captured.out and "DSB score" in captured.out
    model = load_mask_rcnn(out)
    assert isinstance(model, MaskRCNN) and len(model.detect(np.zeros((1, 32, 32, 1), np.float32))) == 1

    assert main(["evaluate", str(out), "--data", str(root), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert {"ap", "ap50", "ap75", "dsb", "params"} <= set(row) and row["num_images"] == 2
    assert 0.0 <= row["ap50"] <= 1.0 and row["params"] == model.count_params()


def test_an_instance_image_of_another_size_is_named_and_nothing_is_written(tmp_path, capsys):
    root = _write_instances(tmp_path / "cells", instance_size=48)
    out = tmp_path / "detector.keras"
    assert main(["train", "--data", str(root), "--model", "mask-rcnn", *TINY, "--out", str(out)]) == 2
    error = one_error(capsys.readouterr().err)
    assert "t0.png" in error and "48x48" in error and "32x32" in error
    assert "write the label image at its image's size" in error
    assert not out.exists() and list(tmp_path.iterdir()) == [root]


def test_a_dataset_without_instances_is_refused_with_the_layout_it_needs(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=4)
    out = tmp_path / "detector.keras"
    assert main(["train", "--data", str(root), "--model", "mask-rcnn", *TINY, "--out", str(out)]) == 2
    error = one_error(capsys.readouterr().err)
    assert str(root) in error and "instances/" in error and "label image" in error
    assert not out.exists()


def test_a_segmentation_model_is_refused_where_a_mask_rcnn_is_expected(tmp_path, capsys):
    from segprune.models import unet

    path = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=4, depth=2).save(path)
    root = _write_instances(tmp_path / "cells")
    before = sorted(tmp_path.rglob("*"))
    assert main(["evaluate", str(path), "--data", str(root), "--instances"]) == 2
    error = one_error(capsys.readouterr().err)
    assert "unet.keras" in error and "not a Mask R-CNN" in error and "--model mask-rcnn" in error
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("option", [["--resume"], ["--base-filters", "8"]])
def test_options_of_the_segmentation_models_are_refused(tmp_path, capsys, option):
    root = _write_instances(tmp_path / "cells")
    assert main(["train", "--data", str(root), "--model", "mask-rcnn", *TINY, *option, "--out", str(tmp_path / "d.keras")]) == 2
    assert option[0] in capsys.readouterr().err


def test_prune_takes_a_mask_rcnn_file_and_a_search_needs_its_instances(tmp_path, capsys):
    from segprune.models.mask_rcnn import mask_rcnn, save_mask_rcnn
    from tests.fixtures import TINY_MASK_RCNN

    dense = save_mask_rcnn(mask_rcnn(**TINY_MASK_RCNN), tmp_path / "dense.keras")
    out = tmp_path / "pruned.keras"
    assert main(["prune", str(dense), "--ratio", "0.5", "--prune-heads", "0.5", "--round-to", "1", "--image-size", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "MACs at 64x64" in printed.out
    assert "pruned RoI heads (l1, heads 0.5)" in printed.out and "box_fc1" in printed.out and "MMACs per RoI" in printed.out
    assert ".resume" not in printed.err, "a Mask R-CNN prune keeps no resume state, so it names none"
    pruned = load_mask_rcnn(out)
    assert isinstance(pruned, MaskRCNN) and pruned.box_head.get_layer("box_fc1").units == TINY_MASK_RCNN["box_head_units"] // 2
    searched = tmp_path / "searched.keras"
    assert main(["prune", str(dense), "--method", "greedy", "--target", "flops=0.5", "--out", str(searched)]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "trains on instances" in error and "--data DATA" in error and not searched.exists()


@pytest.mark.parametrize("option", ["--prune-heads", "--prune-pyramid"])
def test_prune_heads_or_pyramid_is_refused_for_a_model_without_roi_heads(tmp_path, capsys, option):
    from segprune.models import unet

    path = tmp_path / "unet.keras"
    unet(num_classes=2, input_channels=1, base_filters=4, depth=2).save(path)
    out = tmp_path / "pruned.keras"
    assert main(["prune", str(path), "--ratio", "0.5", option, "0.5", "--out", str(out)]) == 2
    error = one_error(capsys.readouterr().err)
    assert f"{option} prunes a Mask R-CNN's RoI heads" in error and "unet.keras is not a Mask R-CNN" in error and not out.exists()


@pytest.mark.exhaustive  # make test-all: the instance search itself is tested in tests/search/test_instance_search.py
def test_greedy_search_on_a_mask_rcnn_file_scores_candidates_by_mask_ap_and_resumes(tmp_path, capsys):
    from segprune.models.mask_rcnn import mask_rcnn, save_mask_rcnn
    from tests.fixtures import TINY_DETECTOR

    root = _write_instances(tmp_path / "cells", count=8)
    dense = save_mask_rcnn(mask_rcnn(**TINY_DETECTOR), tmp_path / "dense.keras")
    out = tmp_path / "searched.keras"
    command = ["prune", str(dense), "--method", "greedy", "--target", "flops=0.6", "--data", str(root), "--iterations", "1",
               "--candidate-steps", "1", "--round-to", "4", "--image-size", "32", "--finetune-epochs", "1", "--out", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr()
    assert "val mask AP" in printed.err and "val Dice" not in printed.err
    assert "test mask AP50: dense" in printed.out and "ms ->" in printed.out  # the trunks are timed side by side
    assert isinstance(load_mask_rcnn(out), MaskRCNN)
    logged = [json.loads(line)["type"] for line in (tmp_path / "searched.search" / "search.jsonl").read_text().splitlines()]
    assert "candidate" in logged and logged[-1] == "done", logged
    assert main([*command, "--resume"]) == 0
    assert "already evaluated (resumed)" in capsys.readouterr().err


def test_steps_per_epoch_is_refused_for_a_segmentation_model(make_folder_dataset, tmp_path, capsys):
    root = make_folder_dataset(count=4)
    out = tmp_path / "unet.keras"
    assert main(["train", "--data", str(root), "--model", "unet", "--steps-per-epoch", "3", "--out", str(out)]) == 2
    assert "--steps-per-epoch is for --model mask-rcnn" in one_error(capsys.readouterr().err) and not out.exists()
