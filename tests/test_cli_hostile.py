"""The command line under hostile conditions: corrupt weights, failing writes, two runs on one output, framework noise."""

import os
import subprocess
import sys

import numpy as np
import pytest

from segprune.cli import main
from segprune.cli._console import framework_noise_filtered
from tests.models.test_checks import poisoned

# What TensorFlow 2.x writes to file descriptor 2 at start-up and on a kernel fallback, as it writes it.
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796396427.281645   11612 port.cc:153] oneDNN custom operations are on. You may see slightly different "
    b"numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the "
    b"environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    b"E0000 00:00:1796396431.102938   11612 mkl_util.h:123] oneDNN supports DT_INT32 only on platforms with AVX-512. "
    b"Falling back to the default Eigen-based implementation if present.\n",
    b"WARNING:tensorflow:5 out of the last 24 calls to <function TensorFlowTrainer.make_predict_function.<locals>."
    b"one_step_on_data_distributed at 0x7fa74069d1c0> triggered tf.function retracing. Tracing is expensive and ...\n",
]
REAL = [b"epoch   1/2  loss 0.6931\n", b"E0000 00:00:1796396431.1 11612 op_kernel.cc:1830] OP_REQUIRES failed: OOM when allocating\n",
        b"Traceback (most recent call last):\n"]


def test_framework_noise_is_filtered_and_everything_else_passes(tmp_path):
    written = tmp_path / "stderr.txt"
    with open(written, "wb") as stream:
        with framework_noise_filtered(stream.fileno()):
            for line in (NOISE[0], REAL[0], NOISE[1], REAL[1], NOISE[2], REAL[2], NOISE[3]):
                os.write(stream.fileno(), line)
    assert written.read_bytes() == b"".join(REAL)


def test_a_crashing_run_still_shows_what_it_wrote_last():
    """The filter is a process of its own: a run that aborts mid-way loses none of its last lines."""
    crash = (
        "import os\nfrom segprune.cli._console import framework_noise_filtered\nwith framework_noise_filtered():\n"
        f"    os.write(2, {NOISE[1] + REAL[1]!r})\n    os.abort()\n"
    )
    completed = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=60)
    assert completed.returncode != 0 and completed.stderr == REAL[1]


@pytest.mark.parametrize(
    "command",
    [
        ["prune", "{model}", "--ratio", "0.5", "--out", "{out}/p.keras"],
        ["sparsify", "{model}", "--data", "nuclei", "--sparsity", "0.5", "--out", "{out}/s.keras"],
        ["export", "{model}", "--out", "{out}/m.onnx"],
        ["quantize", "{model}", "--out", "{out}/m.onnx"],
        ["benchmark", "{model}"],
        ["evaluate", "{model}", "--data", "nuclei"],
        ["sweep", "--model", "{model}", "--out", "{out}/sweep"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_refuses_a_nan_kernel_by_name_before_any_work(command, tmp_path, capsys):
    model = tmp_path / "poisoned.keras"
    poisoned(np.nan).save(model)
    out = tmp_path / "out"
    assert main([part.format(model=model, out=out) for part in command]) == 2
    error = capsys.readouterr().err
    assert "layer 'encoder_conv' weight 'kernel' (1 NaN of 36 values)" in error and "poisoned.keras" in error
    assert not out.exists() or not any(out.iterdir())


def test_the_filter_passes_the_runs_last_lines_while_a_child_still_holds_stderr(tmp_path):
    """The run's own lines (a last partial one too) are through when the filter ends, though a child keeps the pipe open."""
    written = tmp_path / "stderr.txt"
    with open(written, "wb") as stream:
        with framework_noise_filtered(stream.fileno()):
            child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, stderr=stream.fileno())
            os.write(stream.fileno(), REAL[0] + NOISE[2] + b"partial")
        at_exit = written.read_bytes()
        still_running = child.poll() is None
        child.communicate(b"")
    assert at_exit == REAL[0] + b"partial" and still_running
