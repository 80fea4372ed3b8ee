"""Shared fixtures: tiny datasets written to disk, the shipped nuclei data, small models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA compilations shared by the JAX test workers and the processes they start (the SIGKILLed search): the
# same small models compile once per run instead of once per process. Only JAX reads these.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import keras
import numpy as np
import pytest
from PIL import Image

from segprune.data import synthetic_dataset
from segprune.graph import build_channel_graph
from segprune.models import unet

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_NUCLEI = REPO_ROOT.parent / "shared" / "datasets" / "nuclei-dsb2018"  # the team's copy, beside the repository
NUCLEI = REPO_ROOT / "segprune" / "data" / "builtin" / "nuclei"  # the copy the package ships
DATA_DIR = Path(__file__).resolve().parent / "data"
# A skip whose reason starts with this is repeated as a warning at the end of the run: CI stays green
# without a browser, but nobody should read that as "the report renders".
NOT_RENDERED = "REPORT RENDERING NOT CHECKED"


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


# Synthetic 32x32 one-channel datasets, made once per run: a dataset is never changed by the code under test.
@pytest.fixture(scope="session")
def data():
    """8 training tiles: enough for a short search, a resumed run or a sparse schedule."""
    return synthetic_dataset(num_train=8, num_val=2, num_test=2, image_size=32, channels=1)


@pytest.fixture(scope="session")
def data4():
    """4 training tiles, for tests that only need a run to go through."""
    return synthetic_dataset(num_train=4, num_val=2, num_test=2, image_size=32, channels=1)


@pytest.fixture(scope="session")
def data16():
    """16 training tiles, for tests whose training must learn something (sparsity schedules, search scores)."""
    return synthetic_dataset(num_train=16, num_val=4, num_test=4, image_size=32, channels=1)


@pytest.fixture(scope="module")
def model(data):
    """A one-level U-Net of 16 base filters for `data`'s classes; one per module, since tests may train it."""
    return unet(num_classes=data.num_classes, input_channels=1, base_filters=16, depth=1)


@pytest.fixture(scope="module")
def model_graph(model):
    """`model`'s channel graph at 64x64, the size the search tests measure at: what `segprune.prune` hands a search."""
    return build_channel_graph(model, input_shape=(64, 64))


@pytest.fixture
def nuclei_path() -> Path:
    if not (NUCLEI / "images").is_dir():
        pytest.fail(f"The nuclei tiles the package ships are missing at {NUCLEI}.")
    return NUCLEI


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def blob_pair(rng: np.random.Generator, size: int = 32, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image with bright squares and its 0/1 mask."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(2):
        top, left = rng.integers(0, size - 8, size=2)
        mask[top : top + 8, left : left + 8] = 1
    image = (mask * 180 + rng.integers(0, 60, size=(size, size))).astype(np.uint8)
    if channels == 3:
        image = np.stack([image, image // 2, image], axis=-1)
    return image, mask


@pytest.fixture
def make_folder_dataset(tmp_path):
    """Writes images/ and masks/ with `count` blob images; returns the root."""

    def make(count: int = 6, size: int = 32, channels: int = 1, split_lines: list[str] | None = None) -> Path:
        root = tmp_path / "dataset"
        rng = np.random.default_rng(0)
        for index in range(count):
            image, mask = blob_pair(rng, size, channels)
            write_png(root / "images" / f"tile{index}.png", image)
            write_png(root / "masks" / f"tile{index}.png", mask)
        if split_lines is not None:
            (root / "split.txt").write_text("\n".join(split_lines) + "\n")
        return root

    return make


# The tests that must pass under every Keras backend (`KERAS_BACKEND=jax|torch pytest -m backends`, which `make
# test` runs after the TensorFlow suite); the rest of the suite runs under TensorFlow only. Node-id prefixes, so
# a file or a single case can be listed. Kept lean (CI runs it twice): what differs between backends is the
# backend modules, surgery, importance, sparse gating and masks, training, searches and export; the greedy
# resume test also runs a short search to its end, and the CLI test a prune and fine-tune on nuclei.
BACKEND_SUBSET = (
    "tests/backend/",
    # The architectures built here, one seed: mobilenet-unet's MobileNetV2 encoder holds every layer kind of
    # keras.applications' ResNet50 and MobileNetV2 (residual adds, padding, depthwise, batch norm), which the
    # TensorFlow suite prunes exactly and which took 44 s more under JAX alone.
    *(f"tests/graph/test_equivalence.py::test_pruned_equals_zeroed_original[0-{name}]" for name in ("unet-transpose", "unet-bilinear", "fcn8s", "mobilenet-unet")),
    "tests/structured/test_importance.py",
    "tests/sparse/test_model.py",
    "tests/sparse/test_magnitude.py::test_masked_weights_and_their_adam_moments_stay_exactly_zero",
    "tests/sparse/test_magnitude.py::test_masks_survive_a_save_and_reload_in_the_middle_of_training",
    "tests/sparse/test_regularised.py::test_hard_concrete_gate_formulas",
    "tests/sparse/test_regularised.py::test_gates_are_deterministic_at_inference_and_strip_keeps_the_function",
    "tests/runtime/test_export_backends.py::test_export_under_the_running_backend_matches_its_own_outputs[onnx",  # LiteRT: same child
    "tests/runtime/test_export_backends.py::test_a_wrong_foreign_export_is_refused_by_the_verification",
    "tests/runtime/test_export_backends.py::test_int8_litert_is_refused_in_one_line_off_tensorflow",
    "tests/search/test_resume.py::test_sigkill_then_resume_chooses_what_an_uninterrupted_run_chooses[greedy-extra0-4]",
    "tests/test_cli_backends.py",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "backends: must pass under every Keras backend (CI runs them under JAX and PyTorch too)")


def pytest_addoption(parser):
    parser.addoption("--exhaustive", action="store_true", help="also run the tests marked exhaustive (make test-all)")


# The longest test files (measured with --durations on a quiet 2-core machine), started first: pytest-xdist
# hands whole files to its workers in collection order (`--no-loadscope-reorder`), and one long file begun
# last would leave the other core idle while it ends. A stale entry costs nothing but balance.
LONGEST_FILES = (
    "tests/report/test_sweep.py",
    "tests/structured/test_resume.py",
    "tests/sparse/test_resume.py",
    "tests/sparse/test_magnitude.py",
    "tests/structured/test_regularised.py",
    "tests/sparse/test_regularised.py",
    "tests/test_training.py",
    "tests/test_demo.py",
    "tests/models/test_mask_rcnn_export.py",
    "tests/experiments/test_deployment.py",
    "tests/search/test_masked_candidates.py",
    "tests/runtime/test_export.py",
    "tests/graph/test_vit.py",
    "tests/test_training_distribution.py",
    "tests/graph/test_equivalence.py",
    "tests/runtime/test_export_backends.py",
)


def _longest_first(item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_longest_first)  # stable: files keep their own order, and their tests theirs
    for item in items:
        if item.nodeid.startswith(BACKEND_SUBSET):
            item.add_marker(pytest.mark.backends)
    if config.getoption("--exhaustive"):
        return
    skip = pytest.mark.skip(reason="exhaustive: the default suite covers this kind; run `make test-all` for every instance")
    for item in items:
        if "exhaustive" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """Makes a skipped rendering check impossible to miss in the summary."""
    unchecked = []
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if NOT_RENDERED in reason:
            unchecked.append((report.nodeid, reason.removeprefix("Skipped: ")))
    for nodeid, reason in unchecked:
        terminalreporter.write_sep("!", "WARNING", red=True, bold=True)
        terminalreporter.write_line(f"WARNING: {nodeid} was SKIPPED. {reason}", red=True, bold=True)
        terminalreporter.write_line("WARNING: install Debian's chromium (`make chromium` as root) to check that report.html renders.", red=True, bold=True)
