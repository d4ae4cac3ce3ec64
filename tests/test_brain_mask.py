"""Brain masks: raw MRI (threshold), already-normalised volumes (non-zero), a given mask."""

import numpy as np
import SimpleITK as sitk
from synth import BRATS_GRID, MODS, grid_image, preprocess, write_case


def zscored_case(tmp_path):
    """The phantom z-scored inside the brain, background exactly 0 (as the BRATS 2015
    DeepMedic release ships it): about half of the brain is negative."""
    paths = write_case(tmp_path, "z1", BRATS_GRID)
    for mod in MODS:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(paths[mod])).astype(np.float32)
        brain = arr != 0
        arr[brain] = (arr[brain] - arr[brain].mean()) / arr[brain].std()
        sitk.WriteImage(grid_image(BRATS_GRID, arr), paths[mod])
    return paths, brain


def test_auto_mask_keeps_the_negative_half_of_a_normalised_brain(tmp_path):
    paths, brain = zscored_case(tmp_path)
    rec, _ = preprocess("z1", paths, tmp_path / "auto")
    assert rec["brain_mask"] == "nonzero"
    assert rec["brain_voxels"] == int(brain.sum())
    thr, _ = preprocess("z1", paths, tmp_path / "thr", brain_mask="threshold")
    assert thr["brain_mask"] == "threshold"
    assert thr["brain_voxels"] < 0.8 * brain.sum()  # the old default lost the negatives


def test_raw_scans_keep_the_percentile_threshold(tmp_path):
    paths = write_case(tmp_path, "r1", BRATS_GRID)  # int16 with some negative noise
    rec, _ = preprocess("r1", paths, tmp_path / "out")
    assert rec["brain_mask"] == "threshold"


def test_a_given_mask_file_is_the_brain(tmp_path):
    paths, brain = zscored_case(tmp_path)
    mask = brain.copy()
    mask[: mask.shape[0] // 2] = False  # only the upper half is "brain"
    paths["mask"] = str(tmp_path / "z1_mask.nii.gz")
    sitk.WriteImage(grid_image(BRATS_GRID, mask.astype(np.uint8)), paths["mask"])
    rec, out = preprocess("z1", paths, tmp_path / "out")
    assert rec["brain_mask"] == "file" and rec["brain_voxels"] == int(mask.sum())
    image = np.load(out["image.npy"], allow_pickle=False)
    assert not image[: image.shape[0] // 2 - 1].any()  # zero outside the given brain
