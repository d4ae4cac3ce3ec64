"""Model bundles without Snakemake: the settings a bundle brings and the conflicts refused,
the archive, and the input checks of `tumorseg-predict`."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from workflow_helpers import shipped_config

from tumorseg.bundle import archive
from tumorseg.bundle.manifest import read_manifest, write_manifest
from tumorseg.bundle.predict_folder import input_sheet, label_convention
from tumorseg.bundle.settings import apply_bundles
from tumorseg.demo.layouts import export
from tumorseg.errors import InputError
from tumorseg.io.layouts import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]


def write_bundle(folder: Path, config: dict, name="unet", kind="files") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"weights")
    write_manifest(folder, config, name, kind)
    return folder


@pytest.fixture
def bundle(tmp_path):
    trained = shipped_config(
        preprocess={"crop": {"size": [160, 160]}}, label_convention="brats2017"
    )
    trained["models"]["unet"].update(depth=2, base_filters=4)
    return write_bundle(tmp_path / "unet", trained)


def _apply(bundle, tmp_path, given: dict) -> dict:
    shipped = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    merged = {**copy.deepcopy(shipped), **copy.deepcopy(given)}
    merged["pretrained"] = {"unet": str(bundle)}
    config = shipped_config(**{k: v for k, v in merged.items() if k in given or k == "pretrained"})
    apply_bundles(config, {**shipped, **given, "pretrained": merged["pretrained"]}, shipped,
                  tmp_path / "unpacked")  # fmt: skip
    return config


def test_bundle_settings_replace_the_defaults(bundle, tmp_path):
    config = _apply(bundle, tmp_path, {})
    assert config["preprocess"]["crop"]["size"] == [160, 160]
    assert config["models"]["unet"]["depth"] == 2 and config["models"]["unet"]["threads"] == 2
    assert config["pretrained"]["unet"] == str(bundle / "model.keras")


def test_a_changed_preprocessing_setting_is_refused_naming_both(bundle, tmp_path):
    with pytest.raises(InputError, match=r"preprocess.crop.size is \[176, 176\].*\[160, 160\]"):
        _apply(bundle, tmp_path, {"preprocess": {"crop": {"size": [176, 176]}}})
    with pytest.raises(InputError, match=r"modalities is \['flair', 't1'\]"):
        _apply(bundle, tmp_path, {"modalities": ["flair", "t1"]})
    with pytest.raises(InputError, match="models.unet.architecture is 'unet3d'"):
        _apply(bundle, tmp_path, {"models": {"unet": {"architecture": "unet3d"}}})
    # the same value written again is no conflict
    config = _apply(bundle, tmp_path, {"preprocess": {"crop": {"size": [160, 160]}}})
    assert config["preprocess"]["crop"]["size"] == [160, 160]


def test_label_maps_with_the_same_classes_keep_the_data_values(bundle, tmp_path):
    config = _apply(bundle, tmp_path, {"label_convention": "brats2023"})
    assert config["label_convention"] == "brats2023"  # written as 3, the data's value
    with pytest.raises(InputError, match="label map is binary"):
        _apply(bundle, tmp_path, {"label_convention": "binary"})


def test_models_from_before_bundles_and_changed_bundles_are_refused(bundle, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.keras").write_bytes(b"weights")
    with pytest.raises(InputError, match="no bundle.json beside it: it was written before"):
        _apply(old / "model.keras", tmp_path, {})
    (bundle / "model.keras").write_bytes(b"other weights")
    with pytest.raises(InputError, match="differs from the one its bundle.json describes"):
        read_manifest(bundle)


def test_archive_round_trip_is_byte_identical(bundle, tmp_path):
    (bundle / "card.md").write_text("# card\n")
    a = archive.pack(bundle, tmp_path / "a.zip")
    b = archive.pack(bundle / "model.keras", tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()
    assert sorted(zipfile.ZipFile(a).namelist()) == [
        "unet/bundle.json",
        "unet/card.md",
        "unet/model.keras",
    ]
    folder = archive.unpack(a, tmp_path / "unpacked")
    assert folder.name == "unet" and (folder / "model.keras").read_bytes() == b"weights"
    assert archive.unpack(a, tmp_path / "unpacked") == folder  # once
    config = _apply(a, tmp_path, {})
    assert config["pretrained"]["unet"] == str(folder / "model.keras")


def test_unsafe_or_foreign_archives_are_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil/bundle.json", "{}")
    with pytest.raises(InputError, match="not a model bundle archive"):
        archive.unpack(bad, tmp_path / "out")
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable zip archive"):
        archive.unpack(tmp_path / "text.zip", tmp_path / "out")
    assert archive.main([str(tmp_path), "-o", str(tmp_path / "x.zip")]) == 1


def test_export_command(bundle, tmp_path, capsys):
    assert archive.main([str(bundle), "-o", str(tmp_path / "unet.zip")]) == 0
    assert "wrote" in capsys.readouterr().out


def test_predict_inputs_are_checked_against_the_bundle(bundle, tmp_path):
    data = json.loads((bundle / "bundle.json").read_text())
    export("brats2023", tmp_path / "b23", n_subjects=1, shrink=8, n_unlabelled=0)
    sheet, layout = input_sheet([tmp_path / "b23"], data, None)
    assert layout.name == "brats2023" and len(sheet) > 0
    assert set(data["config"]["modalities"]) <= set(sheet.columns)
    assert label_convention(data, layout) == "brats2023"
    assert label_convention(data, LAYOUTS["lgg"]) is None  # binary: other classes
    case = next(p for p in (tmp_path / "b23").iterdir() if p.is_dir())
    next(case.glob("*-t1c.nii.gz")).unlink()
    with pytest.raises(InputError, match=r"no t1ce file found.*model takes flair, t1, t1ce"):
        input_sheet([tmp_path / "b23"], data, None)
    export("lgg", tmp_path / "lgg", n_subjects=1, slice_step=40, slice_size=(32, 32))
    with pytest.raises(InputError, match="trained on volumes; the folder holds slice stacks"):
        input_sheet([tmp_path / "lgg"], data, None)
    files = [case / f"{case.name}-{m}.nii.gz" for m in ("t2f", "t1n", "t2w")]
    with pytest.raises(InputError, match="3 files given, but the model takes 4 modalities"):
        input_sheet(files, data, None)
    sheet, layout = input_sheet(files[:1], data, None)  # one 4D file
    assert layout is None and list(sheet.columns) == ["case", "image", "seg"]
    assert list(sheet["case"]) == [f"{case.name}-t2f"]
    files = [tmp_path / f"pat 1_{m}.nii.gz" for m in data["config"]["modalities"]]
    sheet, _ = input_sheet([f for f in files if f.touch() or True], data, None)
    assert list(sheet["case"]) == ["pat_1"] and sheet["t1ce"].item() == str(files[2])


def test_a_translation_bundle_reads_its_target_as_the_reference(tmp_path):
    config = {"task": "translation", "modalities": ["t1"], "translation": {"target": "t2"}}
    data = {"input": "files", "config": config}
    export("brats2023", tmp_path / "b23", n_subjects=2, shrink=8, n_unlabelled=0)
    sheet, _ = input_sheet([tmp_path / "b23"], data, None)
    assert (
        sheet["t2"].str.endswith("-t2w.nii.gz").all()
        and sheet["t1"].str.endswith("-t1n.nii.gz").all()
    )
    case = sorted(p for p in (tmp_path / "b23").iterdir() if p.is_dir())[0]
    next(case.glob("*-t2w.nii.gz")).unlink()
    sheet, _ = input_sheet([tmp_path / "b23"], data, None)
    assert (sheet["t2"] == "").all()  # predicted, not scored


def test_the_output_folder_may_not_lie_in_the_input(bundle, tmp_path, capsys):
    from tumorseg.bundle.predict_folder import main

    (tmp_path / "in").mkdir()
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "in/out"), "-m", str(bundle)]
    assert main(args) == 1
    assert "the output folder lies inside the input folder" in capsys.readouterr().err
