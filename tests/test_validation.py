"""The 3D validation Dice (tumorseg.training.validation): whole volumes predicted by the
sliding window of inference, the Dice pooled over every voxel of every volume."""

import numpy as np
import pytest

from tumorseg.training.patches import PatchReader
from tumorseg.training.validation import DEFAULT_WINDOWS, validate_volumes


def _write_case(root, case, label, image):
    folder = root / case
    folder.mkdir(parents=True)
    np.save(folder / "image.npy", image.astype(np.float16))
    np.save(folder / "label.npy", label.astype(np.uint8))


def _voxelwise(tiles):
    """A stand-in model whose class at a voxel depends on that voxel's input only: its
    sliding-window prediction is then the same function of the whole volume."""
    value = np.clip(np.rint(tiles[..., 0]), 0, 3).astype(np.int64)
    return np.eye(4, dtype=np.float32)[value]


@pytest.fixture
def cases(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {"a": (12, 20, 18), "b": (5, 9, 11)}  # b: shorter than the patch on every axis
    truths, inputs = {}, {}
    for case, shape in shapes.items():
        truth = rng.integers(0, 4, size=shape)
        noisy = np.where(rng.random(shape) < 0.2, rng.integers(0, 4, size=shape), truth)
        image = np.stack([noisy, rng.normal(size=shape)], axis=-1)
        _write_case(tmp_path, case, truth, image)
        truths[case], inputs[case] = truth, noisy
    return tmp_path, truths, inputs


@pytest.mark.parametrize("windows", [DEFAULT_WINDOWS, {"overlap": 0.25, "gaussian": False}])
def test_the_dice_is_pooled_over_the_whole_volumes(cases, windows):
    root, truths, inputs = cases
    reader = PatchReader(root, ["a", "b"], 4, (8, 8, 8))
    got = validate_volumes(_voxelwise, reader, "brats2017", windows, batch_size=3)
    # independently: the prediction is the noisy input itself; BraTS regions of classes
    regions = {"dice_wt": (1, 2, 3), "dice_tc": (1, 3), "dice_et": (3,)}
    for name, classes in regions.items():
        pred = np.concatenate([np.isin(inputs[c], classes).ravel() for c in ("a", "b")])
        true = np.concatenate([np.isin(truths[c], classes).ravel() for c in ("a", "b")])
        expected = 2 * np.sum(pred & true) / (pred.sum() + true.sum())
        assert got[name] == pytest.approx(expected, abs=1e-12)
        assert 0.5 < got[name] < 1


def test_a_region_absent_from_prediction_and_truth_scores_one(tmp_path):
    label = np.zeros((6, 10, 10), np.uint8)
    label[2:4, 3:6, 3:6] = 2  # edema only: no TC, no ET
    image = np.stack([label, np.zeros_like(label)], axis=-1).astype(np.float32)
    _write_case(tmp_path, "a", label, image)
    reader = PatchReader(tmp_path, ["a"], 4, (8, 8, 8))
    got = validate_volumes(_voxelwise, reader, "brats2017", DEFAULT_WINDOWS, batch_size=2)
    assert got == {"dice_wt": 1.0, "dice_tc": 1.0, "dice_et": 1.0}


def test_the_loss_is_that_of_each_whole_volume_averaged(cases):
    root, truths, inputs = cases
    reader = PatchReader(root, ["a", "b"], 4, (8, 8, 8))

    def loss_fn(onehot, probs):  # a stand-in loss: the share of wrong voxels
        return float(np.mean(onehot.argmax(-1) != probs.argmax(-1)))

    got = validate_volumes(_voxelwise, reader, "brats2017", DEFAULT_WINDOWS, 4, loss_fn)
    wrong = [np.mean(inputs[c] != truths[c]) for c in ("a", "b")]
    assert got["loss"] == pytest.approx(np.mean(wrong), abs=1e-12)
    assert list(got) == ["loss", "dice_wt", "dice_tc", "dice_et"]


def test_a_region_model_is_validated_on_its_thresholded_regions(cases):
    """output: regions: the whole-volume region outputs, thresholded and painted into
    classes as inference does, score what the class model's argmax scores."""
    from tumorseg.tasks.labels import as_label_map

    root, truths, inputs = cases
    reader = PatchReader(root, ["a", "b"], 4, (8, 8, 8))
    brats = as_label_map("brats2017")

    def regionwise(tiles):
        classes = np.clip(np.rint(tiles[..., 0]), 0, 3).astype(np.int64)
        return brats.classes_to_regions(classes).astype(np.float32) * 0.8 + 0.1

    by_class = validate_volumes(_voxelwise, reader, "brats2017", DEFAULT_WINDOWS, 3)
    by_region = validate_volumes(regionwise, reader, "brats2017", DEFAULT_WINDOWS, 3, None, 3)
    assert by_region == pytest.approx(by_class, abs=1e-12)
