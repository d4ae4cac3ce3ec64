"""A trained model that travels: the tiny run's bundle exported as one archive, and a
folder of its cases predicted in another directory by `tumorseg-predict`, exactly as the
workflow predicted them; its model card."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import run_command

pytestmark = pytest.mark.slow


def test_bundle_card_says_what_the_model_was_trained_on(tiny_run):
    folder = tiny_run / "results/models/unet"
    data = json.loads((folder / "bundle.json").read_text())
    assert data["format"] == "tumorseg-bundle" and data["input"] == "files"
    assert data["config"]["modalities"] == ["flair", "t1", "t1ce", "t2"]
    assert data["config"]["preprocess"]["crop"]["size"] == [192, 192]
    assert data["config"]["label_convention"] == "brats2017"
    assert data["model"]["settings"]["base_filters"] == 4
    card = data["card"]
    splits = pd.read_csv(tiny_run / "results/splits/splits.tsv", sep="\t")
    for split, by_scanner in card["cases"].items():
        for scanner, n in by_scanner.items():
            assert n == ((splits["split"] == split) & (splits["scanner"] == scanner)).sum()
    per_case = pd.read_csv(tiny_run / "results/metrics/unet/per_case.tsv", sep="\t")
    val = per_case[(per_case["split"] == "val") & (per_case["region"] == "WT")]
    assert card["metrics"]["val"]["WT"]["dice"]["mean"] == pytest.approx(val["dice"].mean())
    assert card["training"]["epochs_trained"] == 2 and card["training"]["hardware"]
    assert len(card["data_sha256"]) == 64 and card["versions"]["tensorflow"][0].isdigit()
    text = (folder / "card.md").read_text()
    assert "## val metrics" in text and card["commit"] in text


def test_a_folder_predicted_by_one_command_matches_the_workflow(tiny_run, tmp_path):
    archive = tmp_path / "shared/unet.zip"
    run_command("tumorseg-export", str(tiny_run / "results/models/unet"), "-o", str(archive))
    sheet = pd.read_csv(tiny_run / "results/samples.tsv", sep="\t")
    # a siteC case (1.2 mm RAS: resampled both ways) with its reference, a siteA one without
    cases = [sheet.loc[sheet.scanner == site, "case"].iloc[0] for site in ("siteC", "siteA")]
    for case in cases:
        shutil.copytree(tiny_run / "resources/demo" / case, tmp_path / "new" / case)
    (tmp_path / "new" / cases[-1] / f"{cases[-1]}_seg.nii.gz").unlink()  # no reference
    out = tmp_path / "out"
    run_command(
        "tumorseg-predict", "-i", str(tmp_path / "new"), "-o", str(out), "-m", str(archive),
        "--cores", "2",
    )  # fmt: skip
    for case in cases:
        got = nib.load(out / f"{case}_seg.nii.gz")
        want = nib.load(tiny_run / f"results/predictions/unet/{case}_seg.nii.gz")
        np.testing.assert_array_equal(got.affine, want.affine)
        np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(want.dataobj))
    scored = pd.read_csv(out / "metrics.tsv", sep="\t")
    ours = pd.read_csv(tiny_run / "results/metrics/unet/per_case.tsv", sep="\t")
    ours = ours[ours["case"].isin(scored["case"])]
    assert set(scored["case"]) == set(cases[:-1])  # the cases with a reference
    key = ["case", "region"]
    merged = scored.merge(ours, on=key, suffixes=("", "_workflow"))
    assert len(merged) == len(scored) == 3 * (len(cases) - 1)
    np.testing.assert_array_equal(merged["dice"], merged["dice_workflow"])
    assert not (tmp_path / "new" / cases[0] / ".snakemake").exists()  # nothing in the input
