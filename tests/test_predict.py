"""Prediction of one case: native grid, optional probability maps, loud geometry failures."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from synth import preprocess, write_case
from training_fixtures import save_tiny_unet

from tumorseg.errors import InputError
from tumorseg.inference.export import check_written
from tumorseg.inference.predict import predict_case
from tumorseg.preprocessing import geometry as geo
from tumorseg.tasks.labels import to_internal

RAS = {
    "size": (120, 110, 70),
    "spacing": (2.0, 2.0, 2.2),
    "origin": (119.0, 109.0, -76.0),
    "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    paths = write_case(tmp, "p1", RAS)
    _, out = preprocess("p1", paths, tmp)
    return tmp, paths, out, save_tiny_unet(tmp / "model.keras")


def test_prediction_and_probabilities_on_the_native_grid(case):
    tmp, paths, out, model = case
    seg, probs = tmp / "seg.nii.gz", tmp / "probs.nii.gz"
    times = predict_case(
        "p1",
        model,
        out["image.npy"],
        out["geometry.json"],
        paths["flair"],
        "brats2017",
        16,
        str(seg),
        str(probs),
        threads=1,
    )
    assert set(times) == {"read", "model", "inversion", "write"}
    ref = nib.load(paths["flair"])
    for p in (seg, probs):
        img = nib.load(str(p))
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        assert img.shape[:3] == ref.shape
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
    p = sitk.GetArrayFromImage(sitk.ReadImage(str(probs)))
    assert p.shape == (*labels.shape, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(p, -1), to_internal(labels, "brats2017"))


def test_input_changed_since_preprocessing_is_an_error(case, tmp_path):
    tmp, paths, out, model = case
    moved = sitk.ReadImage(paths["flair"])
    moved.SetOrigin((0.0, 0.0, 0.0))
    other = tmp_path / "flair.nii.gz"
    sitk.WriteImage(moved, str(other))
    with pytest.raises(InputError, match="case p1.*preprocessed on"):
        predict_case(
            "p1",
            model,
            out["image.npy"],
            out["geometry.json"],
            str(other),
            "brats2017",
            16,
            str(tmp_path / "seg.nii.gz"),
            threads=1,
        )
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_written_affine_that_differs_fails_loudly(case, tmp_path):
    _, paths, _, _ = case
    img = sitk.ReadImage(paths["seg"])
    img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # a flip a viewer would show
    wrong = tmp_path / "wrong.nii.gz"
    sitk.WriteImage(img, str(wrong))
    with pytest.raises(geo.GeometryError, match="affine"):
        check_written(wrong, paths["seg"], "p1")
    check_written(paths["seg"], paths["seg"], "p1")  # the same file passes


def test_mirroring_and_the_uncertainty_map_on_the_native_grid(case):
    """predict.tta: mirror with predict.uncertainty: the segmentation and the float32 entropy
    map lie on the input's grid and affine; the entropy is that of the written (averaged)
    probabilities, checked with scipy's; mirroring changes this (not symmetric) model's
    probabilities."""
    from scipy.stats import entropy

    tmp, paths, out, model = case
    seg, probs, unc = tmp / "tta_seg.nii.gz", tmp / "tta_probs.nii.gz", tmp / "tta_entropy.nii.gz"
    args = ("p1", model, out["image.npy"], out["geometry.json"], paths["flair"], "brats2017", 16)
    predict_case(*args, str(seg), str(probs), threads=1, mirror=(-2,), out_uncertainty=str(unc))
    ref = nib.load(paths["flair"])
    for p in (seg, unc):
        img = nib.load(str(p))
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        assert img.shape == ref.shape
        assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(ref.affine)
    assert nib.load(str(unc)).get_data_dtype() == np.float32
    p = sitk.GetArrayFromImage(sitk.ReadImage(str(probs)))
    h = sitk.GetArrayFromImage(sitk.ReadImage(str(unc)))
    np.testing.assert_allclose(h, entropy(p, axis=-1), atol=1e-5)
    assert 0 <= h.min() and h.max() <= np.log(4) + 1e-6
    plain = tmp / "plain_probs.nii.gz"
    predict_case(*args, str(tmp / "plain_seg.nii.gz"), str(plain), threads=1)
    assert not np.allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(plain))), p, atol=1e-4)
