"""Region-based training (``output: regions``): the label map's nested regions and their
painting back into labels, the region loss and Dice, the model's outputs, and the way back
to the native grid of a region model's probabilities."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from synth import BRATS_GRID, preprocess, write_case

from tumorseg.errors import InputError
from tumorseg.tasks.labels import as_label_map

BRATS = as_label_map("brats2017")


def test_brats_regions_round_trip_every_label_exactly():
    """WT, TC, ET painted larger first give back necrosis, edema and enhancing exactly,
    for the 2017, 2023 and Decathlon value conventions alike."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 4, (6, 7, 8)).astype(np.uint8)
    for convention in ("brats2017", "brats2023", "decathlon"):
        labels = as_label_map(convention)
        regions = labels.classes_to_regions(classes)
        assert regions.shape == (6, 7, 8, 3)
        np.testing.assert_array_equal(
            labels.regions_to_classes(regions.astype(np.float32)), classes
        )
    assert BRATS.region_painting() == [(0, 2), (1, 1), (2, 3)]  # WT->edema, TC->NCR, ET
    # thresholded at 0.5; a voxel in ET but not WT still gets ET (painted last)
    probs = np.array([[0.6, 0.4, 0.2], [0.6, 0.6, 0.4], [0.2, 0.2, 0.7], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(BRATS.regions_to_classes(probs), [2, 1, 3, 0])
    binary = as_label_map("binary")
    np.testing.assert_array_equal(binary.regions_to_classes(np.array([[0.3], [0.8]])), [0, 1])


def _custom(regions, labels=None):
    labels = labels or {"a": 1, "b": 2, "c": 3}
    return as_label_map({"convention": "custom", "labels": labels, "regions": regions})


def test_regions_that_do_not_nest_are_refused():
    ok = _custom({"all": ["a", "b", "c"], "bc": ["b", "c"], "c": ["c"]})
    assert ok.region_painting() == [(0, 1), (1, 2), (2, 3)]
    disjoint = _custom({"a": ["a"], "b": ["b"], "c": ["c"]})
    assert len(disjoint.region_painting()) == 3
    for regions, message in (
        ({"ab": ["a", "b"], "bc": ["b", "c"], "c": ["c"]}, "overlap without one holding"),
        ({"ab": ["a", "b"], "c": ["c"]}, "2 classes of its own"),
        ({"a": ["a"], "b": ["b"]}, r"labels \['c'\] are in no region"),
    ):
        with pytest.raises(InputError, match=message):
            _custom(regions).region_painting()


def test_the_region_loss_and_dice():
    """BCE + soft Dice on region targets summed from one-hot classes, checked against numpy;
    the region Dice of a region model thresholds its own output."""
    from tumorseg.training.losses import RegionDice, RegionLoss, region_dice_metrics

    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, (2, 8, 8))
    onehot = np.eye(4, dtype=np.float32)[classes]
    probs = rng.uniform(0.01, 0.99, (2, 8, 8, 3)).astype(np.float32)
    regions = list(BRATS.regions.values())
    targets = BRATS.classes_to_regions(classes).astype(np.float32)
    bce = -np.mean(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
    inter = (targets * probs).sum(axis=(0, 1, 2))
    denom = targets.sum(axis=(0, 1, 2)) + probs.sum(axis=(0, 1, 2))
    dice = 1 - np.mean((2 * inter + 1e-5) / (denom + 1e-5))
    loss = RegionLoss(regions, 1.0, 0.5)
    assert float(loss(onehot, probs)) == pytest.approx(bce + 0.5 * dice, rel=1e-5)
    assert float(RegionLoss(regions, 1.0, 1.0)(onehot, targets * 0.98 + 0.01)) < 0.05
    metric = RegionDice("TC", (1, 3), output_index=1)
    metric.update_state(onehot, probs)
    pred, truth = probs[..., 1] > 0.5, np.isin(classes, (1, 3))
    want = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert float(metric.result()) == pytest.approx(want, rel=1e-6)
    assert [m.output_index for m in region_dice_metrics("brats2017", True)] == [0, 1, 2]
    assert RegionDice.from_config(metric.get_config()).output_index == 1


def test_a_region_model_has_one_sigmoid_output_per_region():
    from pathlib import Path

    from training_fixtures import TINY_UNET, model_defaults

    from tumorseg.training.assemble import build, compiled_model

    schema = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    settings = {**model_defaults(schema), **TINY_UNET, "output": "regions"}
    model = build(settings, 4, 32, "brats2017")
    assert model.output_shape[-1] == 3
    out = np.asarray(model(np.zeros((1, 32, 32, 4), np.float32)))
    assert out.shape == (1, 32, 32, 3) and (out > 0).all() and (out < 1).all()
    assert not np.allclose(out.sum(-1), 1.0)  # sigmoids, not a softmax
    compiled = compiled_model(settings, 4, 32, 10, None, "brats2017")
    assert type(compiled.loss).__name__ == "RegionLoss"
    assert build({**TINY_UNET}, 4, 32, "brats2017").output_shape[-1] == 4


RAS = {
    "size": (120, 110, 70),
    "spacing": (2.0, 2.0, 2.2),
    "origin": (119.0, 109.0, -76.0),
    "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


@pytest.mark.parametrize("grid", ["brats", "ras"])
def test_region_probabilities_go_back_to_the_native_grid(tmp_path, grid):
    """The regions of the case's own downsampled label, as a region model would give them,
    land on the input's grid and affine (resampled, or pasted on a BraTS grid) and paint
    back the labels the ceiling (the classes' own round trip) gives, in the dataset's
    values; the saved region probabilities and the uncertainty map too."""
    from tumorseg.inference.export import write_case_prediction
    from tumorseg.io.grid import load_geometry
    from tumorseg.preprocessing.geometry import labels_to_native

    paths = write_case(tmp_path, "r1", RAS if grid == "ras" else BRATS_GRID)
    _, out = preprocess("r1", paths, tmp_path)
    label = np.load(out["label.npy"])
    record = load_geometry(out["geometry.json"])
    probs = BRATS.classes_to_regions(label).astype(np.float32)
    seg, rprobs, unc = tmp_path / "seg.nii.gz", tmp_path / "p.nii.gz", tmp_path / "u.nii.gz"
    forward = {"record": record, "probs": probs, "times": {}}
    write_case_prediction(
        "r1", forward, paths["flair"], "brats2017", str(seg), str(rprobs), str(unc)
    )
    ref = nib.load(paths["flair"])
    for path in (seg, unc):
        img = nib.load(str(path))
        assert img.shape[:3] == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(rprobs)))
    assert saved.shape == (*ref.shape[::-1], 3) and saved.max() <= 1
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
    assert set(np.unique(got)) <= {0, 1, 2, 4}
    ceiling = BRATS.from_internal(sitk.GetArrayFromImage(labels_to_native(label, record)))
    for classes in BRATS.regions.values():
        values = [BRATS.values[c] for c in classes]
        a, b = np.isin(got, values), np.isin(ceiling, values)
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.97
    if grid == "brats":  # no resampling: the pasted regions give the ceiling exactly
        np.testing.assert_array_equal(got, ceiling)
