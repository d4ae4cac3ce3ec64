"""A digest of the package code each step script runs, so that Snakemake reruns what it ran.

Snakemake's ``code`` rerun trigger watches a ``script:`` rule's script only, not the modules
of this package that the script imports. The workflow therefore gives every such rule a
``params: code=`` value, the digest of the script's *package closure*: the ``tumorseg``
modules the script imports, those modules' own imports, and so on (imports inside functions
included, since they run too). An edit to one of them changes the param, and Snakemake's
``params`` trigger reruns exactly the jobs whose code changed.

The closure is found statically with :mod:`ast` (nothing is imported, so start-up stays fast
and needs no heavy library). Each module is hashed through its syntax tree
(:func:`ast.dump`), so comments, blank lines and formatting do not count; docstrings and any
change of the code do. Stdlib only.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "tumorseg"


def package_modules(src_dir: str | Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file of every module of ``package`` under ``src_dir``."""
    root = Path(src_dir)
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(tree: ast.AST, name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that the parsed module ``name`` (file ``path``) imports,
    with their parent packages (importing ``a.b`` runs ``a/__init__.py`` first)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules
    with_parents = set()
    for module in found:
        parts = module.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return with_parents & modules.keys()


def closure(
    script: str | Path, modules: dict[str, Path], trees: dict[str, ast.AST] | None = None
) -> set[str]:
    """Every module of ``modules`` that running ``script`` can import."""
    trees = {} if trees is None else trees
    script = Path(script)
    todo = imported_modules(ast.parse(script.read_text()), "__main__", script, modules)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        if name not in trees:
            trees[name] = ast.parse(modules[name].read_text(), filename=str(modules[name]))
        todo |= imported_modules(trees[name], name, modules[name], modules) - seen
    return seen


def script_digests(scripts_dir: str | Path, src_dir: str | Path) -> dict[str, str]:
    """Script name (file stem) -> digest of its package closure, for every script of
    ``scripts_dir``; each module is parsed once."""
    modules = package_modules(src_dir)
    trees: dict[str, ast.AST] = {}
    hashes: dict[str, str] = {}
    digests = {}
    for script in sorted(Path(scripts_dir).glob("*.py")):
        total = hashlib.sha256()
        for name in sorted(closure(script, modules, trees)):
            if name not in hashes:
                hashes[name] = hashlib.sha256(ast.dump(trees[name]).encode()).hexdigest()
            total.update(f"{name} {hashes[name]}\n".encode())
        digests[script.stem] = total.hexdigest()[:20]
    return digests
