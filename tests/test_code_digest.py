"""The package closure and code digest of each step script (tumorseg.code_digest)."""

import shutil
import subprocess
import sys
from pathlib import Path

from tumorseg.code_digest import closure, package_modules, script_digests

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"


def test_closure_follows_imports_inside_functions():
    modules = package_modules(ROOT / "src")
    evaluate = closure(SCRIPTS / "evaluate.py", modules)
    # scoring imports tumorseg.io.slices inside a function; slices imports io.grid
    assert {
        "tumorseg",
        "tumorseg.logs",
        "tumorseg.evaluation.scoring",
        "tumorseg.evaluation.segmentation",
        "tumorseg.io.slices",
    } <= evaluate
    assert {"tumorseg.io.grid", "tumorseg.tasks.labels", "tumorseg.io.atomic"} <= evaluate
    assert "tumorseg.preprocessing.geometry" not in evaluate  # the grid is io's, not a stage's
    assert (
        not {"tumorseg.training.train", "tumorseg.training.models", "tumorseg.splitting.splits"}
        & evaluate
    )
    train = closure(SCRIPTS / "train.py", modules)
    assert {
        "tumorseg.training.train",
        "tumorseg.training.models",
        "tumorseg.training.losses",
        "tumorseg.training.augment",
    } <= train
    assert "tumorseg.evaluation.segmentation" not in train


def test_every_script_has_a_digest_and_no_heavy_library_is_imported():
    code = (
        "import sys; sys.path.insert(0, 'src');"
        "from tumorseg.code_digest import script_digests;"
        "d = script_digests('workflow/scripts', 'src');"
        "heavy = {'numpy', 'pandas', 'tensorflow', 'keras', 'SimpleITK'} & set(sys.modules);"
        "print(len(d), sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(len(list(SCRIPTS.glob("*.py")))), "[]"]


def _copy(tmp_path):
    shutil.copytree(ROOT / "src" / "tumorseg", tmp_path / "src" / "tumorseg")
    shutil.copytree(SCRIPTS, tmp_path / "scripts")
    return tmp_path / "scripts", tmp_path / "src"


def test_digest_changes_with_the_code_a_script_runs_only(tmp_path):
    scripts, src = _copy(tmp_path)
    before = script_digests(scripts, src)
    metrics = src / "tumorseg" / "evaluation" / "segmentation.py"
    text = metrics.read_text()
    metrics.write_text("# a comment\n" + text.replace("\nimport ", "\n\nimport ") + "\n# more\n")
    assert script_digests(scripts, src) == before  # comments and blank lines do not count
    metrics.write_text(text + "\nEDITED = 1\n")
    after = script_digests(scripts, src)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"evaluate", "aggregate", "summarise", "choose_postprocessing", "postprocess"}
    # a new module counts once a script imports it
    (src / "tumorseg" / "extra.py").write_text("X = 1\n")
    assert script_digests(scripts, src) == after
    (scripts / "extra_step.py").write_text("import tumorseg.extra\n")
    again = script_digests(scripts, src)
    assert again.keys() - after.keys() == {"extra_step"}
    (src / "tumorseg" / "extra.py").write_text("X = 2\n")
    final = script_digests(scripts, src)
    assert {name for name in again if again[name] != final[name]} == {"extra_step"}
