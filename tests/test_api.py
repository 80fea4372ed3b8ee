"""`segprune.prune` and `segprune.sparsify`: one entry point for every method, one result type, early errors."""

import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

import segprune
from segprune.api import ONESHOT_METHODS, STRUCTURED_SETTINGS
from segprune.data import BatchConfig
from segprune.models import unet
from segprune.search import kinds
from segprune.training import TrainConfig


@pytest.fixture
def model(data4):
    return unet(num_classes=data4.num_classes, input_channels=data4.image_channels, base_filters=16, depth=2)


QUICK = TrainConfig(batches=BatchConfig(batch_size=2, image_size=32), patience=None)


def test_oneshot_to_a_target_meets_it_and_leaves_the_model_alone(model):
    weights = [w.copy() for w in model.get_weights()]
    result = segprune.prune(model, "l1", target="flops=0.5", image_size=64)
    assert result.method == "l1" and result.search is None and result.training == []
    assert result.summary.macs_ratio <= 0.5
    assert result.model.count_params() < model.count_params()
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_oneshot_fine_tunes_when_asked(model, data4):
    result = segprune.prune(model, "l2", ratio=0.5, data=data4, finetune_epochs=1, train_config=QUICK)
    assert result.finetune_epochs == 1 and result.finetune_seconds > 0
    assert result.summary.macs_ratio < 0.5  # half the channels of each group: about a quarter of the MACs


def test_settings_reach_the_regularised_and_search_methods(model, data4, tmp_path, monkeypatch):
    """The dispatch routes each setting to its method under the method's own name, then fine-tunes (with the
    dense model as teacher when distilling) the same way for every method. The methods are tested apart."""
    calls = {}

    def record(name):
        def method(*args, **kwargs):
            calls[name] = (args, kwargs)
            return SimpleNamespace(model=args[0], notes=[f"{name} ran"], training=[], config={"group": 8})
        return method

    finetunes = []

    def finetune(run, phase, student, data, epochs, config, on_epoch, teacher=None, distill=None):
        finetunes.append((phase, epochs, teacher, distill))
        return SimpleNamespace(history=[None] * epochs, seconds=1.0)

    monkeypatch.setattr(segprune.api, "slimming_prune", record("slimming"))
    monkeypatch.setattr(segprune.api, "random_search", record("random"))
    monkeypatch.setattr(kinds, "train_phase", finetune)
    distill = segprune.DistillConfig(temperature=3.0, weight=0.25)
    slim = segprune.prune(
        model, "slimming", target="flops=0.5", data=data4, finetune_epochs=3, regularise_epochs=2, strength=1e-3, distill=distill
    )
    args, kwargs = calls["slimming"]
    assert args[2] == "flops=0.5" and kwargs["epochs"] == 2 and kwargs["strength"] == 1e-3 and kwargs["finetune_epochs"] == 0
    assert finetunes == [("finetune", 3, model, distill)]
    assert slim.notes == ["slimming ran"] and slim.summary.macs_ratio == 1.0 and slim.finetune_epochs == 3

    finetunes.clear()
    search = segprune.prune(
        model, "random-search", target="params=0.5", data=data4, image_size=32, folder=tmp_path, candidates=3, candidate_steps=5,
        threads=1, time_result=False, seed=7,
    )
    args, kwargs = calls["random"]
    settings, candidate_settings, num_candidates = args[3], args[4], args[5]
    assert (settings.target, settings.image_size, settings.threads, settings.time_result) == ("params=0.5", (32, 32), 1, False)
    assert (candidate_settings.finetune_steps, candidate_settings.seed, num_candidates) == (5, 7, 3)
    # searches default to 20 epochs, distilled as on the command line (segprune.defaults)
    assert finetunes == [("finetune", 20, model, segprune.DistillConfig())]
    assert search.search is not None and search.search_folder == tmp_path


def test_progress_is_printed_by_default_as_the_command_line_prints_it_and_off_with_progress_false(model, data4, tmp_path, monkeypatch, capsys):
    """Every event without a callback of its own becomes the command line's line on stderr: the search's plan,
    its candidates and the fine-tune's epochs."""

    def search(*args, on_start, on_candidate, **kwargs):
        if on_start is None:  # progress=False
            return SimpleNamespace(model=args[0], notes=[], config={})
        on_start({"method": "random-search", "expected": 2, "evaluated": 0, "description": "2 candidates"})
        on_candidate({"index": 0, "share": 0.4, "score": 0.8, "seconds": 1.0, "done": 1, "expected": 2, "elapsed": 1.0, "remaining": None},
                     {"score": 0.8})
        return SimpleNamespace(model=args[0], notes=[], config={})

    def finetune(run, phase, student, data, epochs, config, on_epoch, teacher=None, distill=None):
        record = SimpleNamespace(epoch=1, loss=0.5, val_dice=0.7, seconds=2.0)
        if on_epoch is not None:
            on_epoch(record, SimpleNamespace(best_epoch=1, best_val_dice=0.7), epochs)
        return SimpleNamespace(history=[record], seconds=2.0)

    monkeypatch.setattr(segprune.api, "random_search", search)
    monkeypatch.setattr(kinds, "train_phase", finetune)
    options = dict(target="params=0.5", data=data4, image_size=32, folder=tmp_path, finetune_epochs=1, time_result=False)
    segprune.prune(model, "random-search", **options)
    printed = capsys.readouterr().err.splitlines()
    assert printed == [
        "random-search: about 2 candidates (2 candidates)",
        "candidate 1: 0.400 of dense, val Dice 0.8000 (1.0s); best 0.8000; 1/2, 0:01 elapsed, estimating time left",
        "epoch   1/1  loss 0.5000  val Dice 0.7000  best 0.7000 (epoch 1)  2.0s *",
    ]
    epochs = []
    segprune.prune(model, "random-search", **options, on_epoch=lambda *event: epochs.append(event), resume=True)
    assert len(epochs) == 1 and len(capsys.readouterr().err.splitlines()) == 2, "a callback replaces its printed line"
    segprune.prune(model, "random-search", **options, progress=False, resume=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "method,arguments,message",
    [
        ("l1", {}, "exactly one of target= "),
        ("l1", {"target": "flops=0.5", "ratio": 0.5}, "exactly one of target= "),
        ("l1", {"target": "latency=0.5"}, "latency target needs method='greedy'"),
        ("l1", {"target": "flops=0.5", "iterations": 3}, "takes no setting(s) ['iterations']"),
        ("greedy", {"ratio": 0.5}, "prunes to a budget"),
        ("slimming", {"target": "flops=0.5"}, "trains on data"),
        ("l1", {"ratio": 0.5, "finetune_epochs": 2}, "fine-tuning trains on data"),
        ("l1", {"target": "macs=0.5"}, "RESOURCE=FRACTION"),
        ("pruneit", {"target": "flops=0.5"}, "Unknown method 'pruneit'"),
    ],
)
def test_wrong_calls_fail_before_any_work_with_the_fix(model, method, arguments, message):
    with pytest.raises(ValueError) as error:
        segprune.prune(model, method, **arguments)
    assert message in str(error.value)


def test_every_structured_method_has_its_settings_listed():
    assert set(STRUCTURED_SETTINGS) == {*ONESHOT_METHODS, "l0-channel", "slimming", "greedy", "random-search"}


def test_sparsify_dispatches_and_checks_its_settings(model, data4, monkeypatch):
    seen = {}
    def magnitude_prune(*args, **kwargs):
        seen["args"] = args
        return SimpleNamespace(model=args[0])

    monkeypatch.setattr(segprune.api, "magnitude_prune", magnitude_prune)
    segprune.sparsify(model, "magnitude", sparsity=0.8, data=data4, epochs=4, schedule="constant", pattern="2:4")
    _, _, sparsity, epochs, schedule, ranking, pattern, *_ = seen["args"]
    assert (sparsity, epochs, schedule, ranking, pattern) == (0.8, 4, "constant", "global", "2:4")
    with pytest.raises(ValueError, match="takes no setting"):
        segprune.sparsify(model, "magnitude", sparsity=0.5, data=data4, strength=1e-4)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        segprune.sparsify(model, "l1", sparsity=1.5, data=data4)


@pytest.mark.parametrize("method", ["l1", "slimming", "greedy", "magnitude"])
def test_a_model_that_does_not_fit_the_data_is_refused_before_any_state_is_written(data4, tmp_path, method):
    inputs = keras.Input((32, 32, data4.image_channels))
    classifier = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3)(inputs))))
    other_classes = unet(num_classes=data4.num_classes + 1, input_channels=data4.image_channels, base_filters=16, depth=2)
    out = tmp_path / "pruned.keras"
    for model, message in ((classifier, "a segmentation model must output"), (other_classes, f"num_classes={data4.num_classes}")):
        with pytest.raises(ValueError, match=message):
            if method == "magnitude":
                segprune.sparsify(model, method, sparsity=0.5, data=data4, epochs=1, checkpoint_path=out)
            else:
                segprune.prune(model, method, target="flops=0.5", data=data4, finetune_epochs=1, checkpoint_path=out, folder=tmp_path / "search")
    assert sorted(tmp_path.iterdir()) == []


def test_python_data_are_read_with_the_model_s_classes_and_bad_arrays_refused_before_any_state_is_written(tmp_path):
    images = np.zeros((4, 32, 32, 1), np.uint8)
    masks = np.zeros((4, 32, 32), np.uint8)
    masks[:, :8] = 3
    out = tmp_path / "pruned.keras"
    binary = unet(num_classes=2, input_channels=1, base_filters=16, depth=2)
    with pytest.raises(ValueError, match="class index 3, but there are 2 classes"):
        segprune.prune(binary, "l1", target="flops=0.5", data=(images, masks), finetune_epochs=1, checkpoint_path=out)
    with pytest.raises(ValueError, match="Images hold 4 samples but masks 3"):
        segprune.sparsify(binary, sparsity=0.5, data=(images, masks[:3]), checkpoint_path=out)
    with pytest.raises(ValueError, match=r"float with values in \[0, 255\].*divide them by 255"):
        segprune.train(binary, (np.where(masks[..., None] == 3, 255.0, 0.0), masks % 2), epochs=1)
    assert sorted(tmp_path.iterdir()) == []


def test_one_channel_graph_of_the_dense_network_per_call_and_the_same_pruned_model_as_prune_channels(model, data4, monkeypatch):
    """`prune` traces the dense network once, whatever the method's family, and hands that graph to the method, the
    budget and the summary; the one-shot result is the one `prune_channels` gives when it traces the model itself."""
    from segprune.graph import groups

    traced = []
    build = groups.build_channel_graph
    # every module that holds the builder, however it imported it (the package's face, api, the searches, ...)
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("segprune") and getattr(m, "build_channel_graph", None) is build]:
        monkeypatch.setattr(module, "build_channel_graph", lambda m, *a, **k: traced.append(m) or build(m, *a, **k))
    search = dict(target="flops=0.5", data=data4, image_size=32, candidate_steps=0, time_result=False, finetune_epochs=0, progress=False)
    runs = {
        "l1": lambda: segprune.prune(model, "l1", ratio=0.5, round_to=4, image_size=32, progress=False),
        "random-search": lambda: segprune.prune(model, "random-search", candidates=1, **search),
        "greedy": lambda: segprune.prune(model, "greedy", iterations=1, **search),
    }
    results = {}
    for method, run in runs.items():
        traced.clear()
        results[method] = run()
        assert sum(m is model for m in traced) == 1, f"{method}: the dense model was traced {sum(m is model for m in traced)} times"
    assert results["random-search"].summary.macs_ratio <= 0.5 and results["greedy"].summary.macs_ratio <= 0.5
    monkeypatch.undo()
    direct = segprune.prune_channels(model, ratio=0.5, importance="l1", round_to=4)
    assert [w.shape for w in results["l1"].model.weights] == [w.shape for w in direct.weights]
    assert all(np.array_equal(a, b) for a, b in zip(results["l1"].model.get_weights(), direct.get_weights(), strict=True))
