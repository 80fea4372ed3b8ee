"""Benchmark results say when they were not measured as asked."""

import pytest

from segprune.models import unet
from segprune.runtime.benchmark import achieved_gmacs, benchmark_models, file_latency, interleaved_timings
from segprune.runtime.peak import detect_cpu


@pytest.fixture
def thread_setting_refused(monkeypatch):
    """TensorFlow refuses new thread counts once it has run anything."""
    import tensorflow as tf

    def refuse(threads):
        raise RuntimeError("Intra op parallelism cannot be modified after initialization.")

    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", refuse)


@pytest.fixture
def keras_file(tmp_path):
    path = tmp_path / "model.keras"
    unet(base_filters=4, depth=1).save(path)
    return path


def test_keras_benchmark_reports_threads_it_could_not_set(thread_setting_refused, keras_file):
    (result,) = benchmark_models([keras_file], runtime="keras", image_size=32, threads=2, rounds=1)
    assert len(result.notes) == 1
    assert "could not be set to 2" in result.notes[0] and "cannot be modified after initialization" in result.notes[0]
    assert result.to_dict()["notes"] == result.notes


def test_benchmark_notes_nothing_when_threads_were_set(monkeypatch, keras_file):
    import tensorflow as tf

    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda threads: None)
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda threads: None)
    (result,) = benchmark_models([keras_file], runtime="keras", image_size=32, threads=2, rounds=1)
    assert result.notes == ()
    assert result.precision == "fp32" and result.peak_gmacs == pytest.approx(detect_cpu().peak_gmacs("fp32", threads=2))
    assert result.to_dict()["peak_share"] == pytest.approx(result.gmacs_per_second / result.peak_gmacs)
    with pytest.raises(ValueError, match="onnxruntime runs models at \\['fp32'\\] here; got precision 'bf16'"):
        benchmark_models([keras_file], runtime="onnxruntime", precision="bf16")


def test_benchmark_cli_prints_the_note(thread_setting_refused, keras_file, capsys):
    from segprune.cli import main

    assert main(["benchmark", str(keras_file), "--runtime", "keras", "--image-size", "32", "--rounds", "1"]) == 0
    assert "note: Keras (TensorFlow) threads could not be set to 2" in capsys.readouterr().out


def test_achieved_gmacs():
    assert achieved_gmacs(2_600_000_000, 10.0) == pytest.approx(260.0)


def test_file_latency_times_each_file_at_its_fixed_shape(tmp_path, monkeypatch):
    from segprune.runtime.export import export_model

    model = unet(base_filters=4, depth=1)
    fixed, dynamic = tmp_path / "fixed.xml", tmp_path / "dynamic.onnx"
    export_model(model, fixed, "openvino", input_shape=(1, 32, 48))
    export_model(model, dynamic, "onnx")
    shapes = []

    class Recording:
        def __init__(self, runner):
            self.runner, self.input_shape, self.executed_precision = runner, runner.input_shape, runner.executed_precision

        def __call__(self, batch):
            shapes.append(batch.shape)
            return self.runner(batch)

    import segprune.runtime.benchmark as benchmark

    original = benchmark.open_runner
    monkeypatch.setattr(benchmark, "open_runner", lambda *args: Recording(original(*args)))
    latencies = file_latency([fixed, dynamic], "openvino", image_size=64, rounds=2, warmup=0)
    assert [latency.runs for latency in latencies] == [2, 2]
    assert [latency.precision for latency in latencies] == ["fp32", "fp32"]  # OpenVINO told f32, not left to its bf16 default
    (bf16,) = file_latency([fixed], "openvino", rounds=1, warmup=0, precision="bf16")
    assert bf16.precision == ("bf16" if detect_cpu().supports("bf16") else "fp32")
    assert set(shapes) == {(1, 32, 48, 1), (1, 64, 64, 1)}


def test_interleaved_timings_time_each_call_on_its_own_warm_caches():
    """Every timed call follows an untimed call of the same runner when several share the rounds; one runner alone
    is timed on every call (its previous call already warmed it)."""
    calls = []

    def runner(name):
        return lambda x: calls.append((name, float(x)))

    timings = interleaved_timings([runner("a"), runner("b")], [1.0, 2.0], rounds=2, warmup=1)
    assert [len(times) for times in timings] == [2, 2]
    assert [name for name, _ in calls] == ["a", "b"] + ["a", "a", "b", "b"] * 2
    assert all(value == {"a": 1.0, "b": 2.0}[name] for name, value in calls)  # each runner on its own input
    calls.clear()
    interleaved_timings([runner("a")], [1.0], rounds=3, warmup=1)
    assert [name for name, _ in calls] == ["a"] * 4
