"""The `segprune` command: parses arguments, calls the Python API, prints. No pruning logic of its own.

Each command is a module of this package with `DESCRIPTION`, `configure(parser)` and `run(arguments)`. Only the
command being run is imported, and a command module imports its framework-heavy code inside `run`, so
`segprune --help` and `segprune COMMAND --help` answer without starting TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from segprune._lock import output_lock
from segprune.cli._common import user_errors
from segprune.cli._console import framework_noise_filtered, progress_console

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any command imports TensorFlow

# Command -> (module, one-line help). Keep in step with the modules' own HELP (a test checks).
COMMANDS = {
    "train": ("segprune.cli.train", "train a segmentation model"),
    "evaluate": ("segprune.cli.evaluate", "score models on a split"),
    "prune": ("segprune.cli.prune", "remove channels: a genuinely smaller model"),
    "sparsify": ("segprune.cli.sparsify", "sparse (unstructured) pruning while fine-tuning"),
    "classical": ("segprune.cli.classical", "score a classical baseline"),
    "benchmark": ("segprune.cli.benchmark", "time models side by side"),
    "export": ("segprune.cli.export", "export a model, verified"),
    "quantize": ("segprune.cli.quantize", "int8 quantization for a runtime, checked on the test split"),
    "sweep": ("segprune.cli.sweep", "every method at every budget, with a report"),
    "optimize": ("segprune.cli.optimize", "from a trained model to a deployable, timed file with a model card"),
    "demo": ("segprune.cli.demo", "the main job on the built-in data"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    parser = argparse.ArgumentParser(prog="segprune", description="Prune Keras 3 segmentation models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        if name != chosen:
            commands.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        module.configure(commands.add_parser(name, help=help_text, description=module.DESCRIPTION))
    arguments = parser.parse_args(argv)
    with framework_noise_filtered():  # a traceback is printed after it ends, unfiltered
        try:
            with output_lock(getattr(arguments, "out", None)):  # one run per --out
                return module.run(arguments)
        except KeyboardInterrupt:  # Ctrl-C outside a resumable run's epochs: a line, not a traceback
            progress_console.print("interrupted")
            return 130
        except Exception as error:
            if not isinstance(error, user_errors()):
                raise
            message = f"{error}{_resume_hint(error, argv)}"
            progress_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)  # one line, however long
            return 2


def _resume_hint(error: Exception, argv: list[str]) -> str:
    """For a run stopped by a diverging loss, the exact command that resumes it at one tenth of its learning rate."""
    from segprune.training import TrainingDiverged  # loaded already: user_errors() names it

    if not isinstance(error, TrainingDiverged) or "--resume" not in str(error):  # no state kept: nothing to resume
        return ""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--learning-rate":
            skip = True
        elif token != "--resume" and not token.startswith("--learning-rate="):
            kept.append(token)
    return f" To resume at one tenth of the rate: {shlex.join(['segprune', *kept, '--resume', '--learning-rate', f'{error.learning_rate / 10:g}'])}"


if __name__ == "__main__":
    sys.exit(main())
