"""The README and the docs say what the command line offers, with paths a user has."""

import ast
import re
from pathlib import Path

from segprune.cli import COMMANDS, _choices

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _code_blocks(text: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL))


def test_readme_shows_every_command_and_no_other():
    shown = set(re.findall(r"\bsegprune ([a-z][a-z-]*)", _code_blocks(README)))
    assert sorted(set(COMMANDS) - shown) == [], "commands the README's examples never show"
    assert sorted(shown - set(COMMANDS)) == [], "README examples run commands the CLI does not have"


def test_readme_names_every_runtime_and_format():
    offered = {*_choices.BENCHMARK_RUNTIMES, *_choices.QUANTIZE_RUNTIMES, *_choices.LATENCY_RUNTIMES, *_choices.EXPORT_FORMATS}
    missing = sorted(name for name in offered if not re.search(rf"\b{re.escape(name)}\b", README))
    assert not missing, f"runtimes or formats the README never names: {missing}"


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [text for node in nodes if (text := ast.get_docstring(node))]


def test_no_path_a_user_does_not_have():
    """`../shared` exists on the developers' machines only; examples use built-in names or the user's own folders."""
    pages = [*(ROOT / "docs").glob("*.md"), *(ROOT / "segprune").rglob("*.md")]  # the package's READMEs ship in the wheel
    texts = {"README.md": README, **{str(page.relative_to(ROOT)): page.read_text() for page in pages}}
    for path in sorted((ROOT / "segprune").rglob("*.py")):
        texts[str(path.relative_to(ROOT))] = "\n".join(_docstrings(path))
    offending = sorted(name for name, text in texts.items() if "../shared" in text or "/work/shared" in text)
    assert not offending, f"paths only the developers have, in: {offending}"
