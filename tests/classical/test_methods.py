"""Classical baselines on synthetic images with known masks, mappings, and bad parameters."""

import json

import numpy as np
import pytest

from segprune.classical import METHODS, evaluate_classical, segment
from segprune.classical.clustering import dbscan_segment, kmeans_segment
from segprune.classical.mapping import map_by_brightness, map_by_oracle
from segprune.classical.thresholds import watershed_segment
from segprune.cli import main
from segprune.data import SegmentationDataset, load_data


def _discs(size=96, seed=0):
    """Bright discs on a dark noisy background, and their mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=np.int32)
    for row, col in [(25, 25), (30, 70), (70, 40)]:
        mask[(rows - row) ** 2 + (cols - col) ** 2 <= 12**2] = 1
    image = 0.2 + 0.6 * mask + rng.normal(0, 0.03, (size, size))
    return np.clip(image, 0, 1)[..., None].astype(np.float32), mask


def _dice(predicted, truth):
    return 2 * np.sum(predicted * truth) / (predicted.sum() + truth.sum())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_discs(method):
    image, mask = _discs()
    predicted = segment(method, image)
    assert predicted.shape == mask.shape and set(np.unique(predicted)) <= {0, 1}
    assert _dice(predicted, mask) > 0.85, method


def test_watershed_splits_touching_discs():
    size = 80
    rows, cols = np.mgrid[0:size, 0:size]
    mask = ((rows - 40) ** 2 + (cols - 28) ** 2 <= 14**2) | ((rows - 40) ** 2 + (cols - 52) ** 2 <= 14**2)
    image = 0.1 + 0.8 * mask.astype(np.float64)
    labels = watershed_segment(image, sigma=0, min_distance=8)
    assert len(np.unique(labels[labels > 0])) == 2


def test_dbscan_assigns_every_pixel_even_beyond_the_sample():
    image, mask = _discs()
    clusters = dbscan_segment(image, eps=0.05, min_samples=10, sample_size=500)
    assert clusters.shape == mask.shape and clusters.min() >= 0


def test_rule_and_oracle_mappings():
    image, mask = _discs()
    clusters = 1 - mask  # cluster 0 is the discs
    np.testing.assert_array_equal(map_by_brightness(clusters, image), mask)
    np.testing.assert_array_equal(map_by_brightness(clusters, image, "dark"), 1 - mask)
    np.testing.assert_array_equal(map_by_oracle(clusters, mask, 2), mask)
    three = kmeans_segment(image, num_clusters=3)
    assert set(np.unique(map_by_oracle(three, mask, 2))) <= {0, 1}


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda image: dbscan_segment(image, eps=0), "eps"),
        (lambda image: dbscan_segment(image, eps=-1.0), "eps"),
        (lambda image: kmeans_segment(image[:2, :2], num_clusters=5), "more than"),
        (lambda image: kmeans_segment(image, num_clusters=1), "num_clusters"),
        (lambda image: segment("canny", image, sigma=0), "sigma"),
        (lambda image: segment("otsu", np.zeros((4, 4, 5))), "shape"),
        (lambda image: segment("otsu", np.array([["a"]])), "numeric"),
        (lambda image: segment("kmeans", image, mapping="oracle"), "truth"),
        (lambda image: segment("kmeans", image, mapping="median"), "mapping"),
        (lambda image: segment("snakes", image), "Unknown classical method"),
    ],
)
def test_bad_parameters(call, message):
    image, _ = _discs()
    with pytest.raises(ValueError, match=message):
        call(image)


def _disc_dataset():
    pairs = {f"d{seed}": _discs(seed=seed) for seed in range(3)}
    return SegmentationDataset("discs", 2, 1, {"test": list(pairs)}, lambda key: pairs[key])


def test_evaluate_reports_scores_and_speed():
    result = evaluate_classical("kmeans", _disc_dataset(), "test", mapping="oracle")
    assert result.mapping == "oracle" and result.dice > 0.9 and result.ms_per_image > 0 and result.num_images == 3
    assert evaluate_classical("otsu", _disc_dataset(), "test").mapping == "none"


def test_cli_json(nuclei_path, capsys):
    assert main(["classical", "--method", "otsu", "--data", str(nuclei_path), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert {"method", "dice", "iou", "pixel_accuracy", "ms_per_image"} <= set(row)
    assert row["method"] == "otsu" and 0 <= row["dice"] <= 1


def test_best_classical_method_on_nuclei(nuclei_path):
    data = load_data(nuclei_path)
    best = max(evaluate_classical(method, data, "test").dice for method in METHODS)
    assert best >= 0.7


def test_cli_table_gives_each_score_with_its_interval_and_the_image_count(nuclei_path, capsys):
    assert main(["classical", "--method", "otsu", "--data", str(nuclei_path)]) == 0
    printed = capsys.readouterr().out
    row = evaluate_classical("otsu", load_data(nuclei_path), "test").to_dict()
    assert f"{row['num_images']} images, 95% bootstrap intervals" in printed
    low, high = row["dice_interval"]
    assert f"{row['dice']:.4f} [{low:.4f}, {high:.4f}]" in printed and low <= row["dice"] <= high
