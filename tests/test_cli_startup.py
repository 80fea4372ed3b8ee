"""`segprune --help` answers without starting TensorFlow or Keras, and prints nothing on stderr."""

import subprocess
import sys

from segprune.cli import COMMANDS

PROBE = """
import sys
from segprune.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
heavy = sorted(name for name in ("tensorflow", "keras", "onnxruntime", "jax", "torch") if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_help_imports_no_framework_and_is_quiet():
    completed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "HEAVY:\n" in completed.stdout, completed.stdout
    assert completed.stderr == ""
    for name in COMMANDS:
        assert name in completed.stdout


def test_every_command_module_has_help_configure_and_run():
    import importlib

    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.configure) and callable(module.run) and module.DESCRIPTION and help_text, name
        assert isinstance(module.USER_ERRORS, tuple), name
