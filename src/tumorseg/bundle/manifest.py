"""A model bundle: a trained model's folder that says how to apply it.

A bundle is ``results/models/<run>/`` of a training run: ``model.keras``, ``bundle.json``
(this module: everything that shapes the model's input and output), ``card.md`` (what it was
trained on and how well it did; :mod:`tumorseg.bundle.card`), the training history and
curves, and, for translation, ``target_scale.json``. ``tumorseg-export`` packs it into one
archive (:mod:`tumorseg.bundle.archive`).

A run that names a bundle under ``pretrained`` takes these settings from it
(:func:`apply_bundles`): a setting the user changed to another value is refused with both
values named, never applied silently.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from tumorseg.errors import InputError
from tumorseg.io.tables import read_json, write_json
from tumorseg.resources import RUNTIME_KEYS

FORMAT = "tumorseg-bundle"
VERSION = 1
MANIFEST = "bundle.json"
MODEL = "model.keras"
#: config values (dotted paths) that shape a model's input or output: a bundle records them
#: and a run that applies it takes them from it (``image_channels`` is not one: it says what
#: the channels of the user's files hold, and ``modalities`` picks the model's from them)
SHAPING = (
    "task",
    "modalities",
    "translation.inputs",
    "translation.target",
    "preprocess.canonical.size",
    "preprocess.canonical.spacing",
    "preprocess.crop.size",
    "preprocess.crop.mode",
    "preprocess.downsample",
    "preprocess.brain_mask",
    "preprocess.brain_threshold",
    "preprocess.slices",
)
#: the config values that make the label map
LABEL_KEYS = ("label_convention", "labels", "regions")
_MISSING = object()


def get_path(tree: dict, dotted: str, default=_MISSING):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = copy.deepcopy(value)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config: dict) -> str:
    """The digest of a resolved config (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def shaping_config(config: dict) -> dict:
    """The config values of :data:`SHAPING` and :data:`LABEL_KEYS` (a partial config)."""
    out: dict = {}
    for key in (*SHAPING, *LABEL_KEYS):
        value = get_path(config, key)
        if value is not _MISSING:
            set_path(out, key, value)
    return out


def manifest(config: dict, name: str, run: str, fold, settings: dict, sheet_kind: str) -> dict:
    """``bundle.json`` of model ``name`` (its run ``run``) trained with ``config`` (the
    resolved one: modalities and channels filled in); the model's sha256 is added when it
    is written (:func:`tumorseg.bundle.card.write_bundle`)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": name,
            "run": run,
            "fold": fold,
            "file": MODEL,
            "settings": {k: v for k, v in settings.items() if k not in RUNTIME_KEYS},
        },
        "input": sheet_kind,
        "config": shaping_config(config),
    }


def locate(path: str | Path) -> Path:
    """The bundle folder that ``path`` names: the folder itself, or the folder of its
    ``model.keras``; a clear error for a model written before bundles."""
    path = Path(path).expanduser()
    folder = path.parent if path.is_file() else path
    if not path.exists():
        raise InputError("no such model bundle (folder, archive or model.keras)", path=path)
    if not (folder / MANIFEST).is_file():
        old = path if path.is_file() else folder / MODEL
        hint = (
            f"{old.name} has no {MANIFEST} beside it: it was written before model bundles "
            "(or copied alone), so nothing records the preprocessing it was trained with. "
            "Rerun its training workflow with this version (it writes the bundle "
            "results/models/<model>/), or retrain"
            if old.is_file()
            else f"not a model bundle: no {MANIFEST} in the folder"
        )
        raise InputError(hint, path=path)
    return folder


def read_manifest(folder: str | Path) -> dict:
    """A bundle's ``bundle.json``, checked: format, version, and the model file's digest."""
    folder = Path(folder)
    data = read_json(folder / MANIFEST, "model bundle manifest")
    if data.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} manifest", path=folder / MANIFEST)
    if data.get("version") != VERSION:
        raise InputError(
            f"bundle format version {data.get('version')}; this tumorseg reads version "
            f"{VERSION}: use the tumorseg that wrote it, or retrain",
            path=folder / MANIFEST,
        )
    model = folder / data["model"]["file"]
    if not model.is_file():
        raise InputError("the bundle's model file is missing", path=model)
    if data["model"].get("sha256") and file_sha256(model) != data["model"]["sha256"]:
        raise InputError(
            f"the model file differs from the one its {MANIFEST} describes (sha256): the "
            "bundle was changed after it was written; export it again from its run",
            path=model,
        )
    return data


def write_manifest(folder: str | Path, config: dict, name: str, kind: str = "files") -> Path:
    """Write ``bundle.json`` (no card) for the ``model.keras`` in ``folder``, trained with
    ``config`` (resolved: schema defaults and modalities filled) as model ``name``: a bundle
    for a model made outside the workflow (benchmarks, tests)."""
    folder = Path(folder)
    data = manifest(config, name, name, None, config["models"][name], kind)
    data["model"]["sha256"] = file_sha256(folder / MODEL)
    write_json(folder / MANIFEST, data)
    return folder / MANIFEST
