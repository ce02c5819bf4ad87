"""The layer rules: import-linter contracts (pyproject.toml) and reasons for every function-level import of ours."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("apps", "deploy", "training", "policies", "envs", "fileio")
RUNTIME_THIRD_PARTY = {"numpy", "onnxruntime"}
MARK = "# contract:"


def test_import_linter_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is a test extra: pip install -e .[test]")
    # In a child process: import-linter reconfigures logging (dictConfig), which would silence our loggers here.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"a layer contract of pyproject.toml [tool.importlinter] is broken:\n{report}"
    assert "0 broken" in report, report


def _our_module(node: ast.Import | ast.ImportFrom) -> str | None:
    """The first module of ours the import names (relative imports are always ours), else None."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "." * node.level + (node.module or "")
        names = [node.module or ""]
    else:
        names = [alias.name for alias in node.names]
    return next((name for name in names if name.split(".")[0] in OURS), None)


def unexplained_local_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import of our packages inside a function or class body without a `# contract:` reason
    on its line or on the line above."""
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and nested:
                module = _our_module(child)
                here = lines[child.lineno - 1]
                above = lines[child.lineno - 2] if child.lineno >= 2 else ""
                if module and MARK not in here and not above.strip().startswith(MARK):
                    found.append((child.lineno, module))
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def _package_files() -> list[Path]:
    return sorted(p for package in OURS for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def test_function_level_imports_of_ours_say_why():
    offenders = [f"{path.relative_to(REPO)}:{line} imports {module}"
                 for path in _package_files()
                 for line, module in unexplained_local_imports(path.read_text(encoding="utf-8"))]
    assert not offenders, (
        "imports of our own packages inside a function hide the dependency graph: hoist them to the module top, or "
        f"say why they must stay with `{MARK} <why>` on the line or the line above:\n  " + "\n  ".join(offenders))


def test_the_local_import_check_sees_what_it_should():
    source = (
        "import os\n"
        "from training import cli\n"
        "def f():\n"
        "    import json\n"
        "    from envs.config import EnvConfig\n"
        "    import policies.factory as factory  # contract: heavy, only for export\n"
        "    # contract: cycle with training.evaluation\n"
        "    from training.evaluation import evaluate\n"
        "    if True:\n"
        "        from . import sibling\n"
        "class C:\n"
        "    from fileio import atomic\n"
    )
    assert unexplained_local_imports(source) == [(5, "envs.config"), (10, "."), (12, "fileio")]


def test_runtime_imports_only_numpy_onnxruntime_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | RUNTIME_THIRD_PARTY
    found = {}
    for path in sorted((REPO / "deploy" / "runtime").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in allowed and not (top == "deploy" and _runtime_self_import(node)):
                    found.setdefault(top, []).append(f"{path.name}:{node.lineno}")
    assert not found, f"deploy/runtime must run alone (numpy, onnxruntime, the standard library); it imports {found}"


def _runtime_self_import(node: ast.Import | ast.ImportFrom) -> bool:
    names = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    return all(name == "deploy.runtime" or name.startswith("deploy.runtime.") for name in names)
