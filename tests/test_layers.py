"""The floors of the package: a module imports its own folder's modules and the floors below
its own, never a floor above nor a sibling folder of its floor, and no two modules import
each other in a circle (imports inside functions count: they run too). docs/DESIGN.md says
what each floor holds."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tumorseg.code_digest import imported_modules, package_modules

ROOT = Path(__file__).resolve().parents[1]

#: the top-level modules every floor may use; they import one another and nothing else
GROUND = {
    "errors",
    "logs",
    "threads",
    "gpus",
    "names",
    "batches",
    "resources",
    "code_digest",
    "schema_doc",
}
#: the floors above the ground, lowest first; the folders (or top-level modules) of a floor
#: never import one another
FLOORS = [
    {"io"},
    {"tasks"},
    {"report"},
    {"preprocessing", "splitting"},
    {"training", "evaluation"},
    {"inference"},
    {"postprocessing"},
    {"demo", "bundle"},
    {"workflow_config"},
]


def unit_of(module: str) -> str:
    """The folder (or ground) a module ``tumorseg.x[.y]`` belongs to."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in GROUND:
        return "ground"
    return parts[0]


def floor_of(unit: str, floors=FLOORS) -> int | None:
    """0 for the ground, 1 for the lowest floor above it, ...; None for a unit on no floor."""
    if unit == "ground":
        return 0
    for level, units in enumerate(floors, start=1):
        if unit in units:
            return level
    return None


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (parent packages left out)."""
    modules = package_modules(src)
    graph = {}
    for name, path in modules.items():
        found = imported_modules(ast.parse(path.read_text()), name, path, modules)
        graph[name] = {m for m in found if m != name and modules[m].name != "__init__.py"}
    return graph


def violations(src: Path, floors=FLOORS) -> list[str]:
    """Every import that goes up a floor or sideways, every module on no floor, and every
    circle of imports, as lines to print."""
    graph = import_graph(src)
    found = []
    for module, imports in sorted(graph.items()):
        unit = unit_of(module)
        level = floor_of(unit, floors)
        if level is None:
            found.append(f"{module}: its folder {unit!r} is on no floor (add it to FLOORS)")
            continue
        for target in sorted(imports):
            other = unit_of(target)
            other_level = floor_of(other, floors)
            if other == unit or other_level is None:  # on no floor: reported as a module
                continue
            if other_level > level:
                found.append(f"{module} imports {target}: upwards ({unit} -> {other})")
            elif other_level == level:
                found.append(f"{module} imports {target}: sideways ({unit} -> {other})")
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        found.append("circle of imports: " + " -> ".join(err.args[1]))
    return found


def test_the_package_keeps_its_floors():
    found = violations(ROOT / "src")
    assert not found, "\n".join(found)


def test_every_folder_of_the_package_is_on_a_floor_and_init_files_are_empty():
    package = ROOT / "src" / "tumorseg"
    folders = {p.parent.name for p in package.glob("*/__init__.py")}
    assert folders == set().union(*FLOORS) - {"workflow_config"}
    # a re-export would put a whole folder into each step's code digest (code_digest.py)
    assert all(p.read_text() == "" for p in package.glob("*/__init__.py"))
    top = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert top == GROUND | {"workflow_config"}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "tumorseg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # io imports a stage inside a function: upwards
            {"io/images.py": "def f():\n    from tumorseg.preprocessing import geometry\n"},
            "tumorseg.io.images imports tumorseg.preprocessing.geometry: upwards",
        ),
        (  # training imports evaluation, its floor's sibling
            {"training/train.py": "from tumorseg.evaluation.segmentation import dice\n"},
            "tumorseg.training.train imports tumorseg.evaluation.segmentation: sideways",
        ),
        (  # relative import from the ground to a folder
            {"errors.py": "from .io import tables\n"},
            "tumorseg.errors imports tumorseg.io.tables: upwards",
        ),
        (  # a new folder nobody placed
            {"plugins/cc.py": "X = 1\n"},
            "tumorseg.plugins.cc: its folder 'plugins' is on no floor",
        ),
        (  # two modules of one folder import each other
            {"io/a.py": "from tumorseg.io import b\n", "io/b.py": "from tumorseg.io import a\n"},
            "circle of imports: tumorseg.io.",
        ),
    ],
)
def test_the_check_finds_upward_sideways_unplaced_and_circular_imports(tmp_path, files, expected):
    base = {
        "io/__init__.py": "",
        "io/tables.py": "from tumorseg import errors\n",
        "io/images.py": "",
        "preprocessing/__init__.py": "",
        "preprocessing/geometry.py": "from tumorseg.io.tables import read_tsv\n",
        "training/__init__.py": "",
        "training/train.py": "from tumorseg.preprocessing import geometry\n",
        "evaluation/__init__.py": "",
        "evaluation/segmentation.py": "from tumorseg.io import tables\n",
        "errors.py": "",
    }
    src = _package(tmp_path, base)
    assert violations(src) == []
    src = _package(tmp_path, files)
    found = violations(src)
    assert any(line.startswith(expected) for line in found), found
