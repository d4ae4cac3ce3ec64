"""Static checks run in CI: Snakemake's linter, snakefmt, ruff (lint and format), function
lengths."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIRS = ["src", "tests", "workflow", "benchmarks"]
CONFIGS = ["config/config.yaml", "tests/config/tiny.yaml"]
#: longest function (lines from `def` to its last line, decorators excluded) allowed in src/
MAX_FUNCTION_LINES = 80


def tool(name: str) -> str:
    """A console script from this Python's environment (falls back to PATH)."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it is pinned in requirements-dev.txt)")
    return found


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("configfile", CONFIGS)
def test_snakemake_lint_is_clean(configfile, tmp_path):
    # Lint a copy, so that nothing (.snakemake/, demo files) is written into the checkout.
    from workflow_helpers import make_workdir

    workdir = make_workdir(tmp_path / "wf")
    proc = run(tool("snakemake"), "--lint", "--configfile", configfile, cwd=workdir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Lints for" not in output, output
    assert "Congratulations, your workflow is in a good condition!" in output, output


def test_snakefmt_check_is_clean():
    files = ["Snakefile", *(str(p.relative_to(ROOT)) for p in ROOT.glob("workflow/rules/*.smk"))]
    assert len(files) >= 7
    proc = run(tool("snakefmt"), "--check", *files)
    assert proc.returncode == 0, f"run `snakefmt {' '.join(files)}`:\n{proc.stdout}{proc.stderr}"


def test_ruff_check_is_clean():
    dirs = [d for d in PYTHON_DIRS if (ROOT / d).exists()]
    proc = run(tool("ruff"), "check", "--no-cache", *dirs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    dirs = [d for d in PYTHON_DIRS if (ROOT / d).exists()]
    proc = run(tool("ruff"), "format", "--check", "--no-cache", *dirs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (n lines)`` of every function under ``root`` longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_in_src_is_longer_than_80_lines():
    too_long = "\n".join(long_functions(ROOT / "src"))
    assert not too_long, (
        f"split these into steps of at most {MAX_FUNCTION_LINES} lines:\n{too_long}"
    )


def test_long_functions_finds_a_long_function(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    found = long_functions(tmp_path)
    assert len(found) == 1 and "long (81 lines)" in found[0]


def test_benchmarks_import_only_names_the_package_has():
    # benchmarks are not run by the tests; their imports of tumorseg (also those inside
    # functions) must still name what the package defines
    import importlib
    import importlib.util

    checked = 0
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tumorseg"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    found = hasattr(module, alias.name) or importlib.util.find_spec(name)
                    assert found, f"{script.name} imports {name}, which does not exist"
                    checked += 1
    assert checked > 10
