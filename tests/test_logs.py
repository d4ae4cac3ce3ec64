"""A step's log holds everything from its first line: C/C++ output on fd 2, Python
warnings, logging, import errors and, after a native crash, the stack of every thread."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow/scripts").glob("*.py"))
LIGHT = {"sys", "pathlib", "tumorseg.logs"}


def run_script(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``body`` (after ``redirect(log)``-ready imports) in a subprocess; (proc, log)."""
    log = tmp_path / "logs" / "step" / "case.log"
    script = tmp_path / "step.py"
    head = f"import sys\nsys.path.insert(0, {str(ROOT / 'src')!r})\nLOG = {str(log)!r}\n"
    script.write_text(head + textwrap.dedent(body))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    return proc, log.read_text() if log.exists() else ""


def test_native_output_warnings_logging_and_a_crash_while_reading(tmp_path):
    mnc = tmp_path / "c07_t1.mnc"
    mnc.write_bytes(b"not read: the reader crashes first")
    proc, log = run_script(
        tmp_path,
        f"""
        import os, faulthandler, logging, warnings
        from tumorseg.logs import redirect
        redirect(LOG)
        redirect(LOG)  # idempotent
        os.write(2, b"native message from C\\n")
        print("python stderr line", file=sys.stderr)
        warnings.warn("a python warning")
        logging.getLogger("tumorseg").info("hello from tumorseg")
        import SimpleITK as sitk
        from tumorseg.io import images as imageio
        sitk.ReadImage = lambda *a, **k: faulthandler._sigsegv()  # the reader dies
        imageio.read_image({str(mnc)!r}, "c07", "t1")
        """,
    )
    assert proc.returncode != 0
    assert "native message from C\n" in log and "python stderr line\n" in log
    assert "UserWarning: a python warning" in log
    assert log.count("hello from tumorseg") == 1
    reading = f"case c07: reading t1 {mnc}"
    assert reading in log
    assert "Fatal Python error: Segmentation fault" in log
    assert log.index(reading) < log.index("Fatal Python error")
    assert "in read_image" in log.split("Fatal Python error")[1], log
    assert "native message" not in proc.stderr and "Fatal" not in proc.stderr


def test_input_error_after_redirect(tmp_path):
    proc, log = run_script(
        tmp_path,
        """
        import logging
        from tumorseg.logs import redirect, run_step
        redirect(LOG)
        logging.getLogger("tumorseg").info("written before run_step")
        from tumorseg.errors import InputError

        def step():
            raise InputError("t1 image has 3 NaN voxels", "bad01", "/d/bad01_t1.nii.gz")

        run_step(LOG, step)
        """,
    )
    message = "case bad01: /d/bad01_t1.nii.gz: t1 image has 3 NaN voxels"
    assert proc.returncode == 1
    assert "written before run_step" in log, "run_step truncated the log"
    assert log.count(message) == 1 and "Traceback" not in log
    assert proc.stderr.count(message) == 1 and f"ERROR: {message}" in proc.stderr


def test_run_step_alone_still_logs(tmp_path):
    proc, log = run_script(
        tmp_path,
        """
        from tumorseg.logs import run_step
        from tumorseg.errors import InputError

        def step():
            raise InputError("seg file not found", "c02", "/d/c02_seg.nii.gz")

        run_step(LOG, step)
        """,
    )
    assert proc.returncode == 1
    assert log.count("case c02: /d/c02_seg.nii.gz: seg file not found") == 1
    assert "ERROR: case c02" in proc.stderr


def test_other_exception_traceback_in_log_one_line_for_the_user(tmp_path):
    proc, log = run_script(
        tmp_path,
        """
        from tumorseg.logs import redirect, run_step
        redirect(LOG)

        def step():
            raise RuntimeError("ITK said no\\nsecond line of detail")

        run_step(LOG, step)
        """,
    )
    assert proc.returncode == 1
    assert "Traceback" in log and "second line of detail" in log
    assert "ERROR: step failed: RuntimeError: ITK said no" in proc.stderr
    assert "Traceback" not in proc.stderr and "second line" not in proc.stderr


def test_import_error_after_redirect_lands_in_the_log(tmp_path):
    proc, log = run_script(
        tmp_path,
        """
        from tumorseg.logs import redirect, run_step
        redirect(LOG)
        import tumorseg_no_such_module  # noqa: F401
        """,
    )
    assert proc.returncode == 1
    assert "Traceback" in log and "No module named 'tumorseg_no_such_module'" in log
    assert proc.stderr.count("ModuleNotFoundError") == 1 and "Traceback" not in proc.stderr


def test_logs_module_is_light():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); import tumorseg.logs; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy', 'SimpleITK', 'tensorflow', 'pandas', 'nibabel', 'keras'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _imported(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def _is_redirect_call(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "redirect"
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_step_script_redirects_before_heavy_imports(script):
    body = ast.parse(script.read_text()).body
    calls = [i for i, node in enumerate(body) if _is_redirect_call(node)]
    assert len(calls) == 1, f"{script.name} must call redirect(snakemake.log[0]) once"
    # a batch job's own log is its `batch` log (the per-case logs are written beside it)
    assert ast.unparse(body[calls[0]]) in (
        "redirect(snakemake.log[0])",
        "redirect(snakemake.log.batch)",
    )
    early = [m for node in body[: calls[0]] for m in _imported(node)]
    assert set(early) <= LIGHT, f"{script.name} imports {set(early) - LIGHT} before redirect"


def test_step_scripts_import_the_package_of_their_own_checkout():
    """Snakemake passes a script's folder as ``<checkout>/workflow/rules/../scripts``; each
    script must put ``<checkout>/src`` first on ``sys.path`` (pathlib's ``parents`` does not
    resolve ``..``), or a run imports whichever ``tumorseg`` the environment holds, and
    reruns would follow the code of one checkout while another one's runs."""
    from types import SimpleNamespace

    root = Path(__file__).resolve().parents[1]
    fake = SimpleNamespace(scriptdir=str(root / "workflow" / "rules" / ".." / "scripts"))
    scripts = sorted((root / "workflow" / "scripts").glob("*.py"))
    assert len(scripts) >= 10
    for script in scripts:
        inserts = [
            node
            for node in ast.walk(ast.parse(script.read_text()))
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.path.insert"
        ]
        assert len(inserts) == 1, script.name
        where = eval(  # noqa: S307 (the script's own expression, on a stand-in object)
            ast.unparse(inserts[0].args[1]), {"Path": Path, "str": str, "snakemake": fake}
        )
        assert Path(where) == root / "src", script.name
