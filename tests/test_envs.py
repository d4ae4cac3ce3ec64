"""The conda environments (envs/*.yaml): exact pins that agree with requirements.txt, one file
per purpose, every rule pointing at one, and every rule's script importable from its env."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
EXPECTED_ENVS = {"imaging.yaml", "tensorflow.yaml"}

# Import name -> distribution name, where they differ.
DISTRIBUTION = {"SimpleITK": "simpleitk", "skimage": "scikit-image", "yaml": "pyyaml"}
# Provided by conda itself (not pip packages of requirements.txt).
CONDA_ONLY = {"python", "pip"}
EXACT = re.compile(r"^\d+(\.\d+)+$")  # a full release number: 26.3, 2.21.0 (not 3 or 3.*)
# conda's `name=1.2` means 1.2.* (fuzzy); `name=1.2.3` or `name==1.2` is exact
CONDA_FUZZY_SAFE = re.compile(r"^\d+(\.\d+){2,}$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation (conda names are the lower-case pip names)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``name -> version`` of the ``==`` pins in a pip requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.txt: {line!r} is not pinned with =="
        pins[normalise(re.sub(r"\[.*\]", "", name).strip())] = version.strip()
    return pins


def read_env(path: Path) -> tuple[dict[str, str], list[str]]:
    """``(pins, problems)``: the env's packages (conda and pip) and what is not pinned exactly."""
    env = yaml.safe_load(path.read_text())
    pins: dict[str, str] = {}
    problems = []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):  # the pip: sub-list
            for pip_dep in dep.get("pip", []):
                name, sep, version = pip_dep.partition("==")
                if not sep or not EXACT.match(version.strip()):
                    problems.append(f"pip {pip_dep!r} is not pinned exactly (name==version)")
                pins[normalise(re.sub(r"\[.*\]", "", name).strip())] = version.strip()
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=)\s*([^=\s]+)", dep)
        pattern = EXACT if match and match.group(2) == "==" else CONDA_FUZZY_SAFE
        if match is None or not pattern.match(match.group(3)):
            problems.append(f"conda {dep!r} is not pinned exactly (name=version)")
            pins[normalise(re.split(r"[=<>\s]", dep)[0])] = match.group(3) if match else ""
            continue
        pins[normalise(match.group(1))] = match.group(3)
    return pins, problems


def rule_directives(path: Path) -> dict[str, dict[str, str]]:
    """``rule -> {directive: first string value}`` for the ``conda`` and ``script`` directives."""
    rules: dict[str, dict[str, str]] = {}
    current = None
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^\s*rule\s+(\w+)\s*:", line)
        if match:
            current = rules.setdefault(match.group(1), {})
            continue
        # a batch rule made in a loop: `rule:`, then `name:` with batch_rule("<step>", ...)
        # or f"<step>_b{batch}" on the next line; listed under its step
        if re.match(r"^\s*name\s*:\s*$", line):
            step = re.search(r'batch_rule\("(\w+)"|f"(\w+?)_b\{', lines[i + 1])
            if step:
                current = rules.setdefault(step.group(1) or step.group(2), {})
                continue
        match = re.match(r"^\s*(conda|script)\s*:\s*(.*)$", line)
        if match and current is not None:
            value = match.group(2).strip()
            if not value:  # the value is on the next line
                value = lines[i + 1].strip()
            current[match.group(1)] = value.rstrip(",").strip("\"'")
    return rules


def task_scripts() -> dict[str, list[str]]:
    """Key -> the scripts the tasks' ``AGGREGATE`` dicts name under it (a rule shared by
    both tasks has ``script: AGGREGATE["<key>"]``)."""
    found: dict[str, list[str]] = {}
    for path in RULE_FILES:
        for key, script in re.findall(
            r'^\s*"(\w+)": "(\.\./scripts/\w+\.py)"', path.read_text(), re.M
        ):
            found.setdefault(key, []).append(script)
    return found


def all_rules() -> dict[str, tuple[Path, dict[str, str]]]:
    """Rule -> (its file, its directives); a rule whose script the task picks is listed
    once per task's script, as ``<rule> (<script>)``."""
    found = {}
    scripts = task_scripts()
    for path in RULE_FILES:
        for rule, directives in rule_directives(path).items():
            key = re.fullmatch(r'AGGREGATE\["(\w+)"\]', directives.get("script", ""))
            if key is None:
                found[rule] = (path, directives)
                continue
            assert len(scripts[key.group(1)]) == 2, f"rule {rule}: one script per task"
            for script in scripts[key.group(1)]:
                found[f"{rule} ({Path(script).name})"] = (path, {**directives, "script": script})
    return found


def _import_time_nodes(tree: ast.AST):
    """Import statements that run when the module is imported (not those inside functions)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def third_party_imports(script: Path) -> set[str]:
    """Third-party top-level modules that importing ``script`` needs, through ``tumorseg``.

    Only imports executed at import time count: a function-level import (e.g. TensorFlow
    inside a training function) is the concern of the rules that call that function.
    """
    package = ROOT / "src" / "tumorseg"
    seen: set[Path] = set()
    needed: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.add(path)
        for node in _import_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif node.level:  # relative: inside tumorseg
                base = "tumorseg" + (f".{node.module}" if node.module else "")
                modules = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in modules:
                parts = name.split(".")
                if parts[0] == "tumorseg":
                    todo.append(package / "__init__.py")
                    if len(parts) > 1:
                        todo.append(package.joinpath(*parts[1:]).with_suffix(".py"))
                elif parts[0] not in sys.stdlib_module_names and parts[0] != "snakemake":
                    needed.add(parts[0])
    return needed


def test_one_env_per_purpose_and_every_rule_uses_one():
    assert {p.name for p in ENVS.glob("*.yaml")} == EXPECTED_ENVS
    rules = all_rules()
    assert {"preprocess", "train", "predict", "evaluate", "aggregate (aggregate.py)"} <= set(rules)
    assert "aggregate (aggregate_translation.py)" in rules and "summarise (summarise.py)" in rules
    used = set()
    for rule, (path, directives) in rules.items():
        if rule == "all":
            continue
        assert "conda" in directives, f"rule {rule} ({path.name}) has no conda: directive"
        env = (path.parent / directives["conda"]).resolve()
        assert env.is_file(), f"rule {rule}: conda env {directives['conda']} does not exist"
        assert env.parent == ENVS, f"rule {rule}: conda env {env} is not in envs/"
        used.add(env.name)
    assert used == EXPECTED_ENVS, f"env files no rule uses: {EXPECTED_ENVS - used}"
    # TensorFlow only where a model is trained or applied.
    for rule, (_path, directives) in rules.items():
        if rule in ("train", "predict"):
            assert directives["conda"].endswith("tensorflow.yaml"), rule
        elif rule != "all":
            assert directives["conda"].endswith("imaging.yaml"), rule


@pytest.mark.parametrize("env", sorted(EXPECTED_ENVS))
def test_env_pins_are_exact_and_agree_with_requirements(env):
    pins, problems = read_env(ENVS / env)
    assert not problems, f"{env}: " + "; ".join(problems)
    requirements = read_requirements()
    for name, version in pins.items():
        if name in CONDA_ONLY:
            continue
        assert name in requirements, f"{env}: {name} is pinned here but not in requirements.txt"
        assert version == requirements[name], (
            f"{env}: {name}={version} but requirements.txt pins {name}=={requirements[name]}"
        )


def test_python_pin_matches_the_supported_python():
    requires = re.search(
        r'requires-python\s*=\s*">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert requires, "pyproject.toml has no requires-python"
    for env in EXPECTED_ENVS:
        pins, _ = read_env(ENVS / env)
        assert "python" in pins, f"{env} does not pin python"
        major, minor = (int(x or 0) for x in (pins["python"].split(".") + ["0", "0"])[:2])
        assert (major, minor) >= (int(requires.group(1)), int(requires.group(2))), env


def test_every_rule_script_is_importable_from_its_env():
    rules = all_rules()
    envs = {name: read_env(ENVS / name)[0] for name in EXPECTED_ENVS}
    checked = 0
    for rule, (path, directives) in rules.items():
        if "script" not in directives:
            continue
        script = (path.parent / directives["script"]).resolve()
        assert script.is_file(), f"rule {rule}: script {script} does not exist"
        provided = envs[Path(directives["conda"]).name]
        for module in third_party_imports(script):
            dist = normalise(DISTRIBUTION.get(module, module))
            assert dist in provided, (
                f"rule {rule}: {script.name} imports {module} (package {dist}) "
                f"but {Path(directives['conda']).name} does not provide it"
            )
        checked += 1
    assert checked >= 10


def test_requirements_parse_and_the_parsers_catch_loose_pins(tmp_path):
    assert read_requirements()["simpleitk"] == "2.5.7"
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        "dependencies:\n  - python=3.11\n  - numpy\n  - scipy>=1.0\n  - pandas=3.1.1\n"
        "  - pip:\n      - keras>=3\n"
    )
    pins, problems = read_env(loose)
    assert pins["pandas"] == "3.1.1"
    assert len(problems) == 4, problems
    imaging = third_party_imports(ROOT / "workflow" / "scripts" / "preprocess.py")
    assert {"numpy", "SimpleITK"} <= imaging
    assert not {"tensorflow", "keras"} & imaging
    fake = tmp_path / "fake.py"
    fake.write_text("import numpy\nfrom tumorseg import labels\n\n\ndef f():\n    import keras\n")
    assert third_party_imports(fake) == {"numpy"}
