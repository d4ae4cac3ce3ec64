"""A run's settings from the bundles it applies (config ``pretrained``).

Each ``pretrained: {name: PATH}`` names a bundle folder, a bundle archive (``.zip``, unpacked
once under ``unpack_root``) or the ``model.keras`` inside a bundle folder. The bundle's
settings (:data:`~tumorseg.bundle.manifest.SHAPING`, the label map, the model's own) then
replace the config's, except where the user changed a setting: a value the user wrote that
differs from the shipped default (``config/config.yaml``) and from the bundle's is refused,
naming both. One exception: a label map with the same classes and regions under other
values (BraTS 2017's 4 against BraTS 2023's 3 for enhancing tumour) is kept, so the
segmentations are written in the values of the user's data.
"""

from __future__ import annotations

from pathlib import Path

from tumorseg.bundle.archive import unpack
from tumorseg.bundle.manifest import (
    _MISSING,
    LABEL_KEYS,
    SHAPING,
    get_path,
    locate,
    read_manifest,
    set_path,
)
from tumorseg.errors import InputError
from tumorseg.tasks.labels import LabelMap, spec_from_config

#: model settings that change how a trained model predicts (its route, window, mirroring)
PREDICT_MODEL_KEYS = ("architecture", "output", "patch_size", "augment")


def user_set(key: str, given: dict, shipped: dict) -> bool:
    """Whether the user wrote ``key`` with a value other than the shipped default's."""
    value = get_path(given, key)
    return value is not _MISSING and value != get_path(shipped, key)


def open_bundle(path: str | Path, unpack_root: str | Path) -> tuple[Path, dict]:
    """The bundle folder of ``path`` (an archive unpacked) and its checked manifest."""
    path = Path(path).expanduser()
    if path.suffix == ".zip" and path.is_file():
        path = unpack(path, unpack_root)
    folder = locate(path)
    return folder, read_manifest(folder)


def _conflict(key: str, mine, theirs, source: str) -> InputError:
    return InputError(
        f"config {key} is {mine!r}, but the model bundle was trained with {theirs!r}: a "
        "bundle brings its own preprocessing; remove the setting from your config, or use "
        "a model trained with it",
        path=source,
    )


def _apply_label_map(config, given, shipped, bundle_cfg: dict, source: str) -> None:
    theirs = spec_from_config({"label_convention": "brats2017", **bundle_cfg})
    if any(user_set(k, given, shipped) for k in LABEL_KEYS):
        mine = spec_from_config(config)
        if not same_classes(mine, theirs):
            raise InputError(
                f"config label map is {_describe(mine)}, but the model bundle was trained "
                f"with {_describe(theirs)}: its classes and regions differ; remove "
                "label_convention, labels and regions from your config",
                path=source,
            )
        return  # the same classes: written in the values of the user's map
    for key in LABEL_KEYS:
        value = get_path(bundle_cfg, key)
        config[key] = {} if value is _MISSING else value


def same_classes(a: dict, b: dict) -> bool:
    """Whether two label-map specs have the same classes and regions (their file values may
    differ): a model trained with one predicts the other."""
    ma, mb = LabelMap.from_spec(a), LabelMap.from_spec(b)
    return (ma.names, ma.regions) == (mb.names, mb.regions)


def _describe(spec: dict) -> str:
    return f"{spec['convention']} {spec['labels']}"


def _apply_model(config, given, name: str, data: dict, source: str) -> None:
    theirs = data["model"]["settings"]
    written = (given.get("models") or {}).get(name) or {}
    for key in PREDICT_MODEL_KEYS:
        if key in written and key in theirs and written[key] != theirs[key]:
            raise _conflict(f"models.{name}.{key}", written[key], theirs[key], source)
    runtime = {k: v for k, v in (config["models"].get(name) or {}).items() if k not in theirs}
    config["models"][name] = {**runtime, **theirs}


def apply_bundles(config: dict, given: dict, shipped: dict, unpack_root: str | Path) -> dict:
    """Apply every bundle of ``config["pretrained"]`` to ``config`` (validated, defaults
    filled); ``given`` is the config as written, ``shipped`` the shipped default config.
    Returns name -> bundle folder; ``pretrained`` then names each bundle's model file."""
    folders: dict[str, Path] = {}
    set_by: dict[str, str] = {}
    for name, path in list(config["pretrained"].items()):
        folder, data = open_bundle(path, unpack_root)
        source = str(folder)
        bundle_cfg = data["config"]
        for key in SHAPING:
            theirs = get_path(bundle_cfg, key)
            if theirs is _MISSING:
                continue
            mine = get_path(config, key)
            if key in set_by and mine != theirs:
                raise InputError(
                    f"the bundles {set_by[key]} and {source} were trained with different "
                    f"{key} ({mine!r} and {theirs!r}); apply them in separate runs"
                )
            if mine != theirs and user_set(key, given, shipped):
                raise _conflict(key, mine, theirs, source)
            set_path(config, key, theirs)
            set_by[key] = source
        _apply_label_map(config, given, shipped, bundle_cfg, source)
        _apply_model(config, given, name, data, source)
        config["pretrained"][name] = str(folder / data["model"]["file"])
        folders[name] = folder
    return folders
