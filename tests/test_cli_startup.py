"""`segprune --help` and every `segprune COMMAND --help` answer without starting a framework, and print nothing on stderr."""

import importlib
import subprocess
import sys

from segprune.cli import COMMANDS

PROBE = """
import sys
from segprune.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in ("tensorflow", "keras", "onnxruntime", "jax", "torch", "openvino") if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""

# Each choice the command line offers (segprune.cli._choices) and the module that defines it.
CHOICE_SOURCES = {
    "ARCHITECTURES": lambda: tuple(sorted(importlib.import_module("segprune.models").ARCHITECTURES)),
    "ONESHOT_METHODS": lambda: importlib.import_module("segprune.api").ONESHOT_METHODS,
    "REGULARISED_METHODS": lambda: importlib.import_module("segprune.api").REGULARISED_METHODS,
    "SEARCH_METHODS": lambda: importlib.import_module("segprune.api").SEARCH_METHODS,
    "SPARSE_METHODS": lambda: tuple(importlib.import_module("segprune.api").SPARSE_SETTINGS),
    "LATENCY_RUNTIMES": lambda: importlib.import_module("segprune.runtime.latency").RUNTIMES,
    "PRECISIONS": lambda: importlib.import_module("segprune.runtime.latency").PRECISIONS,
    "BENCHMARK_RUNTIMES": lambda: importlib.import_module("segprune.runtime.benchmark").RUNTIMES,
    "BENCHMARK_MODES": lambda: importlib.import_module("segprune.runtime.benchmark").MODES,
    "EXPORT_FORMATS": lambda: tuple(sorted(importlib.import_module("segprune.runtime.export").FORMATS)),
    "QUANTIZE_RUNTIMES": lambda: importlib.import_module("segprune.runtime.quantize").RUNTIMES,
    "OPTIMIZE_RUNTIMES": lambda: importlib.import_module("segprune.experiments.optimize.deploy").RUNTIMES,
    "OPTIMIZE_METHODS": lambda: tuple(importlib.import_module("segprune.experiments.optimize.plan").METHOD_REASONS),
    "BENCHMARK_PRECISIONS": lambda: importlib.import_module("segprune.runtime.benchmark").PRECISIONS["openvino"],
    "QUANTIZE_PRECISIONS": lambda: tuple(importlib.import_module("segprune.runtime.quantize").PRECISIONS),
    "CLASSICAL_METHODS": lambda: importlib.import_module("segprune.classical").METHODS,
    "CLASSICAL_MAPPINGS": lambda: importlib.import_module("segprune.classical.mapping").MAPPINGS,
    "SWEEP_METHODS": lambda: importlib.import_module("segprune.experiments").SWEEP_METHODS,
    "SWEEP_DEFAULT_METHODS": lambda: importlib.import_module("segprune.experiments").SweepConfig().methods,
    "DEMO_EPOCHS": lambda: importlib.import_module("segprune.demo").DEMO_EPOCHS,
    "DEMO_MASK_RCNN_EPOCHS": lambda: importlib.import_module("segprune.demo").DEMO_INSTANCES.finetune_epochs,
}


def _help(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *arguments], capture_output=True, text=True, timeout=120)


def test_help_imports_no_framework_and_is_quiet():
    completed = _help("--help")
    assert completed.returncode == 0, completed.stderr
    assert "HEAVY:\n" in completed.stdout, completed.stdout
    assert completed.stderr == ""
    for name in COMMANDS:
        assert name in completed.stdout


def test_command_help_imports_no_framework_and_is_quiet():
    completed = _help("prune", "--help")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: segprune prune") and "--out" in completed.stdout
    assert completed.stdout.endswith("HEAVY:\n"), completed.stdout[-300:]
    assert completed.stderr == ""


def test_every_command_help_builds_without_a_framework():
    """Every command's parser in one process (a process each would cost seconds): none reaches for a framework."""
    code = (
        "import contextlib, io, sys\nfrom segprune.cli import COMMANDS, main\n"
        "for name in COMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n            main([name, '--help'])\n        except SystemExit:\n            pass\n"
        "    assert out.getvalue().startswith('usage: segprune ' + name), name\n"
        "print(sorted(n for n in ('tensorflow', 'keras', 'onnxruntime', 'jax', 'torch', 'openvino') if n in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "[]\n" and completed.stderr == ""


def test_every_command_module_has_help_configure_and_run():
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.configure) and callable(module.run) and module.DESCRIPTION and help_text, name


def test_offered_choices_match_the_modules_that_define_them():
    from segprune.cli import _choices

    offered = {name: value for name, value in vars(_choices).items() if name.isupper()}
    assert set(offered) == set(CHOICE_SOURCES)
    for name, source in CHOICE_SOURCES.items():
        assert offered[name] == source(), name
