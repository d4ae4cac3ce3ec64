"""Geometry: canonical grid, crop, downsampling and the exact way back, on several grids."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from synth import BRATS_GRID, MODS, preprocess, write_case

from tumorseg.inference.export import write_segmentation
from tumorseg.preprocessing import geometry as geo
from tumorseg.tasks.labels import LabelMap, to_internal

c10, s10 = np.cos(np.radians(10)), np.sin(np.radians(10))
GRIDS = {
    # BraTS: LPS (ITK identity), 1 mm: must not be resampled
    "brats_lps": (BRATS_GRID, False),
    # the same grid stored RAS (flipped x and y): exact reorientation, no interpolation
    "brats_ras": (
        {
            "size": (240, 240, 155),
            "spacing": (1, 1, 1),
            "origin": (239.0, 0.0, 0.0),
            "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        },
        False,
    ),
    # 1.2 mm RAS, another matrix (the demo's siteC)
    "ras_1p2mm": (
        {
            "size": (200, 200, 130),
            "spacing": (1.2, 1.2, 1.2),
            "origin": (119.4, 119.4, -77.4),
            "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        },
        True,
    ),
    # anisotropic thick slices, LPS
    "aniso_lps": (
        {
            "size": (256, 256, 52),
            "spacing": (0.9, 0.9, 3.0),
            "origin": (-115.0, -115.0, -76.5),
            "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1),
        },
        True,
    ),
    # permuted axes (sagittal acquisition: i along S, j along P, k along L) and oblique
    "sagittal_oblique": (
        {
            "size": (150, 230, 200),
            "spacing": (1.1, 1.0, 1.2),
            "origin": (-110.0, -120.0, -80.0),
            "direction": (0, 0, 1, c10, s10, 0, -s10, c10, 0),
        },
        True,
    ),
}


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("name", list(GRIDS))
def test_round_trip_to_native(tmp_path, name):
    grid, resampled = GRIDS[name]
    paths = write_case(tmp_path, "c1", grid)
    rec, out = preprocess("c1", paths, tmp_path)
    assert rec["resampled"] is resampled
    image = np.load(out["image.npy"], allow_pickle=False)
    label = np.load(out["label.npy"], allow_pickle=False)
    assert image.shape == (77, 96, 96, 4) and image.dtype == np.float16
    assert label.shape == (77, 96, 96) and set(np.unique(label)) == {0, 1, 2, 3}
    assert rec["lost_brain_voxels"] == 0 and rec["lost_tumour_voxels"] == 0

    back = geo.labels_to_native(label, rec)
    native = sitk.ReadImage(paths["seg"])
    assert back.GetSize() == native.GetSize()
    assert back.GetSpacing() == native.GetSpacing()
    assert back.GetOrigin() == native.GetOrigin()
    assert back.GetDirection() == native.GetDirection()

    written = tmp_path / "pred.nii.gz"
    write_segmentation(back, paths["seg"], "c1", "brats2017", str(written))
    ref_nib, out_nib = nib.load(paths["seg"]), nib.load(str(written))
    np.testing.assert_allclose(out_nib.affine, ref_nib.affine, atol=1e-5)
    assert nib.aff2axcodes(out_nib.affine) == nib.aff2axcodes(ref_nib.affine)
    assert out_nib.get_data_dtype() == np.uint8

    # the way back lands on the same anatomy: an off-centre tumour overlaps itself
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(written)))
    ref = sitk.GetArrayFromImage(native)
    assert set(np.unique(got)) <= {0, 1, 2, 4}
    assert dice(got > 0, ref > 0) > 0.93, name
    assert dice(np.isin(got, (1, 4)), np.isin(ref, (1, 4))) > 0.88, name
    # a flipped result would land on the mirrored side: make sure it does not
    assert dice(got[:, :, ::-1] > 0, ref > 0) < 0.2


def test_brats_grid_is_a_no_op():
    oriented = geo.Grid.from_dict(BRATS_GRID)
    canonical, resample = geo.canonical_grid(oriented, (240, 240, 155), (1, 1, 1))
    assert not resample and canonical.same_as(oriented)


def test_canonical_grid_is_centred_on_the_scan():
    g = GRIDS["ras_1p2mm"][0]
    oriented = geo.Grid.from_image(geo.reorient(geo.Grid.from_dict(g).reference()))
    canonical, resample = geo.canonical_grid(oriented, (240, 240, 155), (1, 1, 1))
    assert resample
    np.testing.assert_allclose(canonical.centre(), oriented.centre(), atol=1e-9)
    assert canonical.orientation == "LPS" and canonical.size == (240, 240, 155)


def test_shapes_240_192_96_and_back_exactly():
    probs = np.random.default_rng(0).random((77, 96, 96, 4)).astype(np.float32)
    up = geo.upsample_linear(probs, (2, 2, 2), (155, 192, 192))
    assert up.shape == (155, 192, 192, 4)
    rec = {
        "native": BRATS_GRID | {"size": [240, 240, 155]},
        "oriented": BRATS_GRID,
        "canonical": BRATS_GRID,
        "resampled": False,
        "crop": {"start": [24, 24], "size": [192, 192]},
        "downsample": [2, 2, 2],
        "downsampled_shape_zyx": [77, 96, 96],
    }
    rec = {
        k: (geo.Grid.from_dict(v).to_dict() if k in ("native", "oriented", "canonical") else v)
        for k, v in rec.items()
    }
    img, _ = geo.probabilities_to_native(probs, rec)
    assert img.GetSize() == (240, 240, 155)
    arr = sitk.GetArrayFromImage(img)
    assert (arr[:, :24] == 0).all() and (arr[:, :, 216:] == 0).all()  # outside the crop


def test_downsample_mean_is_a_block_average():
    arr = np.arange(4 * 4 * 5, dtype=np.float32).reshape(5, 4, 4)
    out = geo.downsample_mean(arr, (2, 2, 2))
    assert out.shape == (2, 2, 2)  # the 5th slice fills no block and is dropped
    assert out[0, 0, 0] == pytest.approx(arr[:2, :2, :2].mean())
    assert out[1, 1, 1] == pytest.approx(arr[2:4, 2:4, 2:4].mean())


def test_upsample_inverts_downsample_of_a_linear_ramp():
    z, y, x = np.meshgrid(np.arange(40), np.arange(32), np.arange(32), indexing="ij")
    ramp = (0.5 * z + 2.0 * y - x).astype(np.float32)
    back = geo.upsample_linear(geo.downsample_mean(ramp, (2, 2, 2)), (2, 2, 2), ramp.shape)
    np.testing.assert_allclose(back[1:-1, 1:-1, 1:-1], ramp[1:-1, 1:-1, 1:-1], atol=1e-4)


def test_label_downsampling_keeps_small_structures_in_ties():
    lab = np.zeros((2, 2, 2), np.uint8)
    lab[0] = 3  # 4 enhancing voxels against 4 background voxels
    brats = LabelMap.from_spec("brats2017").priority()
    assert geo.downsample_labels(lab, (2, 2, 2), 4, brats)[0, 0, 0] == 3
    lab[0, 0, 0] = 2  # 3 ET, 1 ED, 4 bg: background wins the majority
    assert geo.downsample_labels(lab, (2, 2, 2), 4, brats)[0, 0, 0] == 0
    lab[:] = 2
    lab[0] = 1  # 4 necrotic against 4 edema: the core wins (BraTS priority)
    assert geo.downsample_labels(lab, (2, 2, 2), 4, brats)[0, 0, 0] == 1
    # any other map: the later class wins a tie, background always loses one
    assert geo.downsample_labels(lab, (2, 2, 2), 4)[0, 0, 0] == 2
    many = np.zeros((2, 2, 2), np.uint8)
    many[0] = 30  # 30 classes: counted class by class
    assert geo.downsample_labels(many, (2, 2, 2), 31)[0, 0, 0] == 30


def test_brain_crop_mode_stays_inside_the_grid():
    mask = np.zeros((10, 240, 240), bool)
    mask[:, 0:100, 150:240] = True
    sx, sy = geo.crop_box(mask.shape, (192, 192), "brain", mask)
    assert 0 <= sx <= 48 and 0 <= sy <= 48
    assert geo.outside_crop(mask, (sx, sy), (192, 192)) == 0
    assert geo.crop_box(mask.shape, (192, 192), "center", mask) == (24, 24)


def test_real_case_ceiling_and_affine(tmp_path, real_data):
    case = "TCGA-FG-6692"
    d = real_data / case
    paths = {m: str(d / f"{case}_{m}.nii.gz") for m in [*MODS, "seg"]}
    rec, out = preprocess(case, paths, tmp_path)
    assert not rec["resampled"]
    back = geo.labels_to_native(np.load(out["label.npy"]), rec)
    written = tmp_path / "ceiling.nii.gz"
    write_segmentation(back, paths["seg"], case, "brats2017", str(written))
    np.testing.assert_array_equal(nib.load(str(written)).affine, nib.load(paths["seg"]).affine)
    got = to_internal(sitk.GetArrayFromImage(sitk.ReadImage(str(written))), "brats2017")
    ref = to_internal(sitk.GetArrayFromImage(sitk.ReadImage(paths["seg"])), "brats2017")
    assert dice(got > 0, ref > 0) > 0.93
    assert dice(got == 3, ref == 3) > 0.85
