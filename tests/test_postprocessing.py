"""Post-processing chosen on validation (tumorseg.postprocessing): the operations, the
choice (never lowering a region's validation Dice) and the files on the native grid."""

import json

import nibabel as nib
import numpy as np
import pytest

from tumorseg.errors import InputError
from tumorseg.evaluation.segmentation import dice
from tumorseg.postprocessing.choose import choose, mean_dice
from tumorseg.postprocessing.operations import (
    FOREGROUND,
    apply_step,
    kept_voxels,
    parent_class,
)
from tumorseg.postprocessing.run import choose_for_run, postprocess_case, read_steps
from tumorseg.tasks.labels import as_label_map

BRATS = as_label_map("brats2017")  # classes: 1 necrotic, 2 edema, 3 enhancing


def test_removed_voxels_become_the_enclosing_regions_class():
    assert parent_class(BRATS, "ET") == 1  # ET -> necrosis (TC = {necrosis, ET})
    assert parent_class(BRATS, "TC") == 2  # TC -> edema (WT = TC + edema)
    assert parent_class(BRATS, "WT") == 0
    assert parent_class(BRATS, FOREGROUND) == 0
    tissue = as_label_map(
        {"convention": "custom", "labels": {"a": 1, "b": 2}, "regions": {"a": ["a"], "b": ["b"]}}
    )
    assert parent_class(tissue, "a") == 0


def _blobs():
    mask = np.zeros((12, 12, 12), bool)
    mask[1:5, 1:5, 1:5] = True  # 64 voxels
    mask[8:10, 8:10, 8:10] = True  # 8 voxels
    mask[11, 0, 11] = True  # 1 voxel
    return mask


def test_largest_component_and_minimum_volume():
    mask = _blobs()
    assert kept_voxels(mask, "largest", 0, 1.0).sum() == 64
    assert kept_voxels(mask, "min_volume", 8, 1.0).sum() == 72
    assert kept_voxels(mask, "min_volume", 9, 1.0).sum() == 64
    # volumes are in mm³: at 2 mm³ a voxel the 8-voxel blob is 16 mm³
    assert kept_voxels(mask, "min_volume", 16, 2.0).sum() == 72
    assert kept_voxels(mask, "to_parent_below", 74, 1.0).sum() == 0  # 73 mm³ in all
    assert kept_voxels(mask, "to_parent_below", 73, 1.0).sum() == 73
    assert kept_voxels(mask, "to_parent_below", 74, 2.0).sum() == 73
    # diagonal neighbours are one component (26-connected)
    diagonal = np.zeros((3, 3, 3), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert kept_voxels(diagonal, "largest", 0, 1.0).sum() == 2
    assert kept_voxels(np.zeros((3, 3, 3), bool), "largest", 0, 1.0).sum() == 0
    with pytest.raises(ValueError, match="unknown post-processing operation"):
        kept_voxels(mask, "dilate", 0, 1.0)


def test_a_step_changes_only_its_regions_voxels():
    classes = np.zeros((12, 12, 12), np.uint8)
    classes[_blobs()] = 3  # enhancing blobs
    classes[0, 11, 0] = 2  # an edema voxel, outside ET, touching nothing
    out = apply_step(classes, {"region": "ET", "operation": "largest"}, BRATS, 1.0)
    assert (out == 3).sum() == 64 and (out == 1).sum() == 9  # the small ET -> necrosis
    assert out[0, 11, 0] == 2
    out = apply_step(classes, {"region": "WT", "operation": "largest"}, BRATS, 1.0)
    assert (out == 3).sum() == 64 and out[0, 11, 0] == 0 and (out == 1).sum() == 0


def _case(rng, island: bool, small_et: bool):
    """A BraTS-like case: a tumour (edema around a core with ET), the prediction a shifted
    copy, with a false-positive island and a small false ET where asked."""
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[4:14, 4:14, 4:14] = 2
    ref[6:12, 6:12, 6:12] = 1
    ref[8:10, 8:10, 8:10] = 3 if not small_et else 1
    pred = np.roll(ref, int(rng.integers(0, 2)), axis=0)
    if island:
        pred[17:19, 17:19, 17:19] = 2
    if small_et:
        pred[9, 9, 9] = 3  # an ET the reference does not have
    return pred, ref


def test_choice_keeps_what_raises_validation_dice():
    rng = np.random.default_rng(0)
    cases = [(*_case(rng, island=True, small_et=k % 2 == 0), 1.0) for k in range(4)]
    result = choose(cases, BRATS, min_volumes=(5, 50), relabel_volumes=(5, 50))
    kinds = [(s["region"], s["operation"]) for s in result["steps"]]
    assert (FOREGROUND, "largest") in kinds  # the island goes
    assert "ET" in [region for region, _ in kinds]  # the small false ET becomes necrosis
    for region in BRATS.regions:
        assert result["postprocessed"][region] >= result["raw"][region]
    assert result["postprocessed"]["ET"] > result["raw"]["ET"]
    assert result["postprocessed"]["WT"] > result["raw"]["WT"]
    assert sum(t["kept"] for t in result["tried"]) == len(result["steps"])


@pytest.mark.parametrize("seed", range(6))
def test_postprocessing_never_lowers_the_validation_dice_it_was_chosen_on(seed):
    """Random label maps (scattered islands of every class): whatever is kept, no region's
    mean validation Dice falls, recomputed independently of the chooser."""
    from tumorseg.postprocessing.operations import apply_steps

    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(3):
        ref = (rng.random((10, 10, 10)) < 0.1) * rng.integers(1, 4, (10, 10, 10))
        pred = np.where(rng.random((10, 10, 10)) < 0.8, ref, rng.integers(0, 4, (10, 10, 10)))
        cases.append((pred.astype(np.uint8), ref.astype(np.uint8), 1.0))
    result = choose(cases, BRATS, min_volumes=(2, 5), relabel_volumes=(10, 40))
    after = [apply_steps(p, result["steps"], BRATS, v) for p, _, v in cases]
    refs = [r for _, r, _ in cases]
    raw = mean_dice([p for p, _, _ in cases], refs, BRATS)
    post = mean_dice(after, refs, BRATS)
    for region, classes in BRATS.regions.items():
        assert post[region] >= raw[region] - 1e-12
        direct = np.mean(
            [
                dice(np.isin(a, classes), np.isin(r, classes))
                for a, r in zip(after, refs, strict=True)
            ]
        )
        assert post[region] == pytest.approx(direct)
    assert post == pytest.approx(result["postprocessed"])


def _nifti(path, array, affine):
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))
    return str(path)


@pytest.fixture
def oblique():
    """An affine with rotation, anisotropic spacing and an offset."""
    angle = np.deg2rad(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 1.1, 2.0])
    affine[:3, 3] = [-30.0, 12.5, 7.0]
    return affine


def test_choose_and_apply_on_files_keep_the_native_grid(tmp_path, oblique):
    rng = np.random.default_rng(3)
    cases, preds, refs = [], [], []
    for k in range(3):
        pred, ref = _case(rng, island=True, small_et=True)
        ref_values = BRATS.from_internal(ref)  # dataset values: 1, 2, 4
        pred_values = BRATS.from_internal(pred)
        case = f"c{k}"
        cases.append(case)
        refs.append(_nifti(tmp_path / f"{case}_ref.nii.gz", np.transpose(ref_values), oblique))
        preds.append(_nifti(tmp_path / f"{case}_pred.nii.gz", np.transpose(pred_values), oblique))
    splits = tmp_path / "splits.tsv"
    splits.write_text(
        "case\tsubject\tscanner\tsplit\nc0\tc0\ts\tval\nc1\tc1\ts\tval\nc2\tc2\ts\ttest\n"
    )
    out_json = tmp_path / "pp.json"
    result = choose_for_run(
        "unet", cases, preds, refs, str(splits), "brats2017", str(out_json), None, (5,), (50,)
    )
    assert result["cases"] == ["c0", "c1"] and result["n_cases"] == 2  # validation only
    assert json.loads(out_json.read_text())["steps"] == result["steps"] != []
    steps = read_steps(str(out_json))
    out = tmp_path / "c2_pp.nii.gz"
    postprocess_case("c2", preds[2], refs[2], "brats2017", steps, str(out))
    got, ref_img = nib.load(out), nib.load(refs[2])
    assert got.shape == ref_img.shape
    np.testing.assert_allclose(got.affine, ref_img.affine, atol=1e-4)
    values = np.asarray(got.dataobj)
    assert set(np.unique(values)) <= {0, 1, 2, 4}  # the dataset's values
    raw = np.asarray(nib.load(preds[2]).dataobj)
    assert (values != raw).sum() > 0  # the island and the small ET went
    assert (values[raw == 0] == 0).all()  # nothing was added
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": []}')
    with pytest.raises(InputError, match="not a tumorseg-postprocessing"):
        read_steps(str(bad))


def test_no_validation_cases_chooses_nothing(tmp_path, oblique):
    rng = np.random.default_rng(0)
    pred, ref = _case(rng, island=True, small_et=False)
    p = _nifti(tmp_path / "p.nii.gz", BRATS.from_internal(pred), oblique)
    r = _nifti(tmp_path / "r.nii.gz", BRATS.from_internal(ref), oblique)
    splits = tmp_path / "splits.tsv"
    splits.write_text("case\tsubject\tscanner\tsplit\nc0\tc0\ts\ttest\n")
    result = choose_for_run(
        "m", ["c0"], [p], [r], str(splits), "brats2017", str(tmp_path / "o.json")
    )
    assert result["steps"] == [] and result["n_cases"] == 0


def test_a_slice_stack_prediction_is_postprocessed_as_a_folder_of_masks(tmp_path):
    """LGG: the masks of a stack, as one volume (26-connected across slices), written back
    as the same <id>_<k>_mask.tif files (0/255); a 2-pixel false positive goes."""
    import shutil

    import SimpleITK as sitk
    from test_slices import STEM, write_stack

    images = tmp_path / "images" / STEM
    lesions = write_stack(images)
    pred = tmp_path / "pred" / STEM
    pred.mkdir(parents=True)
    for f in images.glob("*_mask.tif"):
        shutil.copy(f, pred / f.name)
    noisy = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"{STEM}_3_mask.tif")))
    noisy[40, 30:32] = 255
    sitk.WriteImage(sitk.GetImageFromArray(noisy), str(pred / f"{STEM}_3_mask.tif"))
    out = tmp_path / "out" / STEM
    steps = [{"region": "lesion", "operation": "min_volume", "value": 10}]
    postprocess_case(STEM, str(pred), str(images), "binary", steps, str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in pred.iterdir())
    got = np.stack(
        [
            sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{STEM}_{k}_mask.tif")))
            for k in range(1, 13)
        ]
    )
    assert set(np.unique(got)) <= {0, 255}
    np.testing.assert_array_equal(got == 255, lesions)
