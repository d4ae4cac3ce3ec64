import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.evaluation.scoring import evaluate_case
from tumorseg.evaluation.segmentation import (
    CASE_COLUMNS,
    HD95_EMPTY,
    case_metrics,
    hd95_directed,
    hd95_pooled,
    lesion_count,
    region_metrics,
)


def test_hd95_empty_constant_is_grid_diagonal():
    assert HD95_EMPTY == pytest.approx(math.sqrt(240**2 + 240**2 + 155**2), abs=0.005)


def test_counts_with_anisotropic_spacing():
    # grid of 10 voxels; pred 4, ref 3, overlap 2 -> TP 2, FP 2, FN 1, TN 5
    pred = np.zeros((1, 2, 5), bool)
    ref = np.zeros((1, 2, 5), bool)
    pred[0, 0, 0:4] = True
    ref[0, 0, 2:5] = True
    m = region_metrics(pred, ref, spacing=(2.0, 0.5, 3.0))  # voxel volume 3 mm^3
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(5 / 7)
    assert m["volume_pred"] == pytest.approx(12.0)
    assert m["volume_ref"] == pytest.approx(9.0)


def test_identical_masks():
    mask = np.zeros((6, 6, 6), bool)
    mask[1:4, 2:5, 1:5] = True
    m = region_metrics(mask, mask, (1.0, 1.0, 1.0))
    assert m == {
        "dice": 1.0,
        "sensitivity": 1.0,
        "specificity": 1.0,
        "hd95_directed": 0.0,
        "hd95_pooled": 0.0,
        "volume_pred": 36.0,
        "volume_ref": 36.0,
    }


def test_both_empty():
    empty = np.zeros((4, 5, 6), bool)
    m = region_metrics(empty, empty, (1.0, 2.0, 3.0))
    assert m["dice"] == 1.0
    assert m["hd95_directed"] == m["hd95_pooled"] == 0.0
    assert m["sensitivity"] == 1.0
    assert m["specificity"] == 1.0
    assert m["volume_pred"] == 0.0 and m["volume_ref"] == 0.0


def test_only_prediction():
    ref = np.zeros((4, 5, 6), bool)
    pred = ref.copy()
    pred[1, 1, 1:4] = True  # 3 false positives among 120 voxels
    m = region_metrics(pred, ref, (1.0, 2.0, 3.0))
    assert m["dice"] == 0.0
    assert m["hd95_directed"] == m["hd95_pooled"] == HD95_EMPTY
    assert m["sensitivity"] == 0.0  # documented choice for an empty reference
    assert m["specificity"] == pytest.approx(117 / 120)
    assert m["volume_pred"] == pytest.approx(18.0)
    assert m["volume_ref"] == 0.0


def test_only_reference():
    pred = np.zeros((4, 5, 6), bool)
    ref = pred.copy()
    ref[2, 2:4, 2] = True
    m = region_metrics(pred, ref, (1.0, 2.0, 3.0))
    assert m["dice"] == 0.0
    assert m["hd95_directed"] == m["hd95_pooled"] == HD95_EMPTY
    assert m["sensitivity"] == 0.0
    assert m["specificity"] == 1.0
    assert m["volume_ref"] == pytest.approx(12.0)


def test_reference_fills_the_grid():
    ref = np.ones((2, 2, 2), bool)
    pred = np.zeros_like(ref)
    pred[0, 0, 0] = True
    m = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["specificity"] == 1.0  # no negatives: no false positive possible
    assert m["sensitivity"] == pytest.approx(1 / 8)
    assert m["dice"] == pytest.approx(2 / 9)


def test_hd95_single_voxels_anisotropic():
    pred = np.zeros((10, 10, 10), bool)
    ref = pred.copy()
    pred[2, 3, 4] = True
    ref[5, 1, 8] = True  # offsets (3, -2, 4) voxels
    spacing = (2.5, 1.2, 0.7)
    expected = math.sqrt((3 * 2.5) ** 2 + (2 * 1.2) ** 2 + (4 * 0.7) ** 2)
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(expected)
    assert region_metrics(pred, ref, spacing)["hd95_pooled"] == pytest.approx(expected)
    # DeepMind's surface points are the voxels' corners: the far corners of one voxel are as
    # far from the other's nearest corners as the centres are, and they hold the 95th percentile
    assert hd95_directed(pred, ref, spacing) == pytest.approx(expected)


@pytest.mark.parametrize("axis, spacing", [(0, (2.5, 1.0, 0.7)), (2, (1.0, 1.3, 1.5))])
def test_hd95_pooled_shifted_cubes(axis, spacing):
    # 4-voxel cubes, the second shifted by 10 voxels: surface distances are 7, 8, 9 and
    # 10 voxel steps along `axis` for the 16, 12, 12 and 16 surface voxels of each layer
    # (both directions alike); the 95th percentile of those 112 values is the 10-step one.
    shape = [8, 8, 8]
    shape[axis] = 20
    pred = np.zeros(shape, bool)
    pred[2:6, 2:6, 2:6] = True
    ref = np.roll(pred, 10, axis=axis)
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(10 * spacing[axis])


def test_hd95_pooled_hides_few_outliers_the_directed_one_sees():
    # ref: a 4-voxel cube (56 surface voxels); pred: the same cube plus 3 isolated voxels
    # 10 steps away along x. Pooled: 112 zeros and three of 10*sx, whose 95th percentile
    # is 0. Directed: the three outliers are 3 of pred's 59 surface parts, over 5 %.
    sx = 1.5
    ref = np.zeros((10, 10, 20), bool)
    ref[2:6, 2:6, 2:6] = True
    pred = ref.copy()
    for z, y in ((2, 2), (5, 5), (2, 5)):
        pred[z, y, 15] = True
    assert hd95_pooled(pred, ref, (1.0, 1.0, sx)) == 0.0
    assert hd95_directed(pred, ref, (1.0, 1.0, sx)) > 5 * sx


def _blob(rng, shape, n_balls):
    mask = np.zeros(shape, bool)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for _ in range(n_balls):
        c = rng.integers(0, shape)
        r = rng.uniform(1, 5)
        mask |= (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_hd95_bbox_equals_full_grid(seed):
    rng = np.random.default_rng(seed)
    shape = (30, 36, 40)
    pred = _blob(rng, shape, 3)
    ref = _blob(rng, shape, 2)
    # touch the grid border in some cases: erosion there must behave as on the full grid
    if seed % 2:
        pred[0, 5:9, 10:14] = True
        ref[-1, :, -3:] = True
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    assert pred.any() and ref.any()
    fast = hd95_pooled(pred, ref, spacing)
    assert fast == hd95_pooled(pred, ref, spacing, use_bbox=False)
    assert fast > 0


def _surface_by_neighbours(mask: np.ndarray) -> np.ndarray:
    """Coordinates of the mask voxels with a background voxel (outside the grid counts) among
    their 6 face neighbours: the surface of the documented definition, found without
    erosion."""
    padded = np.pad(mask, 1, constant_values=False)
    points = []
    for index in np.argwhere(mask):
        centre = tuple(i + 1 for i in index)
        for axis in range(3):
            for step in (-1, 1):
                near = list(centre)
                near[axis] += step
                if not padded[tuple(near)]:
                    points.append(index)
                    break
            else:
                continue
            break
    return np.array(points, dtype=float)


def _hd95_brute_force(pred, ref, spacing, pooled=True):
    """One 95th percentile of both directions' distances pooled, from all pairwise distances
    (scipy cdist); ``pooled=False``: the larger of the directed percentiles, for contrast."""
    from scipy.spatial.distance import cdist

    a = _surface_by_neighbours(pred) * spacing
    b = _surface_by_neighbours(ref) * spacing
    d = cdist(a, b)
    a_to_b, b_to_a = d.min(axis=1), d.min(axis=0)
    if pooled:
        return float(np.percentile(np.concatenate([a_to_b, b_to_a]), 95))
    return float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


@pytest.mark.parametrize("seed", range(8))
def test_hd95_pooled_is_the_pooled_percentile_of_the_6_connected_surface(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (7, 9, 11)
    pred = rng.random(shape) < 0.35
    ref = rng.random(shape) < 0.25
    ref[2:5, 3:7, 4:9] = True  # a solid block with an interior, so erosion matters
    spacing = np.array([rng.uniform(2.0, 4.0), rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.5)])
    expected = _hd95_brute_force(pred, ref, spacing)
    assert hd95_pooled(pred, ref, tuple(spacing)) == pytest.approx(expected, rel=1e-12)
    got = hd95_pooled(pred, ref, tuple(spacing), use_bbox=False)
    assert got == pytest.approx(expected, rel=1e-12)


def test_hd95_pooled_differs_from_directed_percentiles():
    # one far outlier in the prediction: a directed percentile sees it, the pooled one less
    pred = np.zeros((1, 1, 40), bool)
    ref = np.zeros((1, 1, 40), bool)
    pred[0, 0, :3] = True
    pred[0, 0, 30] = True
    ref[0, 0, :20] = True
    spacing = np.array([1.0, 1.0, 1.0])
    ours = hd95_pooled(pred, ref, tuple(spacing))
    assert ours == pytest.approx(_hd95_brute_force(pred, ref, spacing))
    assert ours != pytest.approx(_hd95_brute_force(pred, ref, spacing, pooled=False))


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
@pytest.mark.parametrize("seed", range(8))
def test_hd95_directed_is_deepminds_robust_hausdorff(seed):
    """Against ``surface_distance`` itself (its own sort and crop) on the whole grid, with the
    spacing in array order and the reference as its ground truth; symmetric in its
    arguments; masks touching the grid's border in some cases, equal spacings (many tied
    distances) in others."""
    import surface_distance

    rng = np.random.default_rng(50 + seed)
    shape = (24, 30, 28)
    pred, ref = _blob(rng, shape, 3), _blob(rng, shape, 2)
    if seed % 2:
        pred[0, 3:9, 5:12] = True
        ref[-1, :, -2:] = True
    spacing = (1.0, 1.0, 1.0) if seed % 4 == 3 else tuple(rng.uniform(0.5, 3.0, 3))
    distances = surface_distance.compute_surface_distances(ref, pred, spacing)
    expected = surface_distance.compute_robust_hausdorff(distances, 95)
    assert hd95_directed(pred, ref, spacing) == pytest.approx(expected, rel=1e-12)
    assert hd95_directed(ref, pred, spacing) == pytest.approx(expected, rel=1e-12)
    transposed = tuple(reversed(spacing))
    assert hd95_directed(pred.T, ref.T, transposed) == pytest.approx(expected, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
def test_hd95_directed_in_2d_is_deepminds_too():
    import surface_distance

    rng = np.random.default_rng(9)
    pred, ref = rng.random((30, 26)) < 0.2, rng.random((30, 26)) < 0.15
    spacing = (1.3, 0.7)
    distances = surface_distance.compute_surface_distances(ref, pred, spacing)
    want = surface_distance.compute_robust_hausdorff(distances, 95)
    assert hd95_directed(pred, ref, spacing) == pytest.approx(want, rel=1e-12)


def test_lesion_count_is_26_connected():
    mask = np.zeros((6, 8, 8), bool)
    mask[0:2, 0:2, 0:2] = True  # blob 1
    mask[2, 2, 2] = True  # touches blob 1 at a corner only: the same lesion (26-connected)
    mask[4:6, 5:8, 0:3] = True  # blob 2
    mask[0, 6, 6] = mask[1, 6, 6] = True  # blob 3, two voxels sharing a face
    mask[5, 0, 7] = True  # blob 4, a single voxel at the grid corner
    assert lesion_count(mask) == 4
    assert lesion_count(np.zeros((3, 3, 3), bool)) == 0
    labels = np.where(mask, 2, 0).astype(np.uint8)  # edema: WT only
    labels[4:6, 5:8, 0:3] = 3  # blob 2 enhancing: WT, TC and ET
    pred = np.zeros_like(labels)
    pred[0:2, 0:2, 0:2] = 2
    df = case_metrics(pred, labels, (1.0, 1.0, 1.0)).set_index("region")
    assert df["lesions_ref"].to_dict() == {"WT": 4, "TC": 1, "ET": 1}
    assert df["lesions_pred"].to_dict() == {"WT": 1, "TC": 0, "ET": 0}


def test_case_metrics_regions():
    # internal classes: 1 necrotic, 2 edema, 3 enhancing
    ref = np.zeros((4, 4, 4), np.uint8)
    pred = np.zeros_like(ref)
    ref[1, 1, 0:3] = [2, 1, 3]  # WT 3, TC {1,3} 2, ET 1
    pred[1, 1, 0:3] = [2, 2, 3]  # WT 3, TC 1, ET 1
    df = case_metrics(pred, ref, (1.0, 1.0, 2.0))
    assert list(df["region"]) == ["WT", "TC", "ET"]
    wt, tc, et = (df.iloc[i] for i in range(3))
    assert wt["dice"] == 1.0 and wt["volume_ref"] == 6.0
    assert tc["dice"] == pytest.approx(2 / 3)
    assert tc["sensitivity"] == pytest.approx(0.5)
    assert tc["volume_pred"] == 2.0 and tc["volume_ref"] == 4.0
    # ref->pred distances 0 and 2 mm (the missed necrotic voxel is one 2-mm x-step away):
    # 95th percentile 0.95 * 2; pred->ref 0
    assert tc["hd95_pooled"] == pytest.approx(1.8)  # [0, 0, 2]: 0.9 * 2
    assert et["dice"] == 1.0 and et["hd95_pooled"] == et["hd95_directed"] == 0.0


def test_case_metrics_specificity_uses_whole_grid():
    # the bounding-box crop must not change the true-negative count
    ref = np.zeros((10, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[5, 5, 5] = 2
    pred[5, 5, 6] = 2
    df = case_metrics(pred, ref, (1.0, 1.0, 1.0)).set_index("region")
    assert df.loc["WT", "specificity"] == pytest.approx(998 / 999)
    assert df.loc["ET", "dice"] == 1.0  # both empty
    assert df.loc["ET", "specificity"] == 1.0


def test_case_metrics_all_empty():
    z = np.zeros((3, 4, 5), np.uint8)
    df = case_metrics(z, z, (1.0, 1.0, 1.0))
    assert list(df["dice"]) == [1.0] * 3
    assert list(df["hd95_pooled"]) == list(df["hd95_directed"]) == [0.0] * 3


def test_case_metrics_shape_mismatch():
    with pytest.raises(InputError, match="shape"):
        case_metrics(np.zeros((3, 4, 5)), np.zeros((3, 4, 6)), (1.0, 1.0, 1.0))


# ------------------------------------------------------------------------ evaluate_case


def _write(path, array, spacing_xyz=(1.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(np.asarray(array, np.uint8))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return str(path)


def test_evaluate_case(tmp_path):
    # brats2017 values: 1 necrotic, 2 edema, 4 enhancing; arrays in (z, y, x)
    ref = np.zeros((8, 6, 5), np.uint8)
    ref[2:4, 2, 2] = 4  # ET: 2 voxels
    ref[2:4, 3, 2] = 2  # edema
    pred = np.zeros_like(ref)
    pred[4:6, 2, 2] = 4  # ET shifted by 2 z-steps (z spacing 3 mm)
    pred[2:4, 3, 2] = 2
    ceiling = ref.copy()
    ceiling[2, 2, 2] = 2  # ceiling turns one enhancing voxel into edema
    p = _write(tmp_path / "pred.nii.gz", pred)
    r = _write(tmp_path / "ref.nii.gz", ref)
    c = _write(tmp_path / "ceil.nii.gz", ceiling)
    out = tmp_path / "out" / "case1.tsv"
    evaluate_case("case1", p, r, c, "brats2017", str(out))
    df = pd.read_csv(out, sep="\t")
    assert list(df.columns) == list(CASE_COLUMNS)
    df = df.set_index("region")
    assert list(df.index) == ["WT", "TC", "ET"]
    assert (df["case"] == "case1").all()
    # voxel volume 1*2*3 = 6 mm^3
    assert df.loc["ET", "volume_ref"] == 12.0
    assert df.loc["WT", "volume_pred"] == 24.0
    assert df.loc["ET", "dice"] == 0.0
    # ET: 2-voxel columns 2 z-steps (3 mm each) apart; each way the distances are 3 and 6 mm,
    # whose pooled 95th percentile (linear, over 3, 3, 6, 6) is 6
    assert df.loc["ET", "hd95_pooled"] == pytest.approx(6.0)
    assert df.loc["WT", "dice"] == pytest.approx(2 * 2 / 8)
    assert df.loc["WT", "ceiling_dice"] == 1.0
    assert df.loc["ET", "ceiling_dice"] == pytest.approx(2 / 3)
    # pooled: ref->ceiling distances 0 and 3 mm, ceiling->ref 0 -> 0.9 * 3
    assert df.loc["ET", "ceiling_hd95"] == pytest.approx(2.7)


def test_evaluate_case_without_ceiling(tmp_path):
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[1, 1, 1] = 1
    p = _write(tmp_path / "pred.nii.gz", ref)
    r = _write(tmp_path / "ref.nii.gz", ref)
    out = tmp_path / "x.tsv"
    evaluate_case("c", p, r, None, "brats2017", str(out))
    df = pd.read_csv(out, sep="\t")
    assert df["ceiling_dice"].isna().all() and df["ceiling_hd95"].isna().all()
    assert list(df["dice"]) == [1.0, 1.0, 1.0]


def test_evaluate_case_grid_mismatch(tmp_path):
    ref = np.zeros((4, 4, 4), np.uint8)
    p = _write(tmp_path / "pred.nii.gz", ref, origin=(0.0, 0.0, 1.0))
    r = _write(tmp_path / "ref.nii.gz", ref)
    out = tmp_path / "x.tsv"
    with pytest.raises(InputError) as err:
        evaluate_case("BraTS_007", p, r, None, "brats2017", str(out))
    msg = str(err.value)
    assert "BraTS_007" in msg and "pred.nii.gz" in msg and "ref.nii.gz" in msg
    assert "origin" in msg
    assert not out.exists()


def test_evaluate_case_size_mismatch(tmp_path):
    p = _write(tmp_path / "pred.nii.gz", np.zeros((4, 4, 5)))
    r = _write(tmp_path / "ref.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match="size"):
        evaluate_case("c", p, r, None, "brats2017", str(tmp_path / "x.tsv"))


def test_evaluate_case_label_outside_convention(tmp_path):
    ref = np.zeros((4, 4, 4), np.uint8)
    pred = ref.copy()
    pred[1, 1, 1] = 3  # 3 is not a brats2017 value
    p = _write(tmp_path / "pred.nii.gz", pred)
    r = _write(tmp_path / "ref.nii.gz", ref)
    out = tmp_path / "x.tsv"
    with pytest.raises(InputError) as err:
        evaluate_case("c7", p, r, None, "brats2017", str(out))
    assert "c7" in str(err.value) and "pred.nii.gz" in str(err.value)
    assert "[3]" in str(err.value)
    assert not out.exists()


def test_evaluate_case_missing_file(tmp_path):
    r = _write(tmp_path / "ref.nii.gz", np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match="not found"):
        evaluate_case("c", str(tmp_path / "nope.nii.gz"), r, None, "brats2017", str(tmp_path / "x"))


def test_evaluate_case_truncated_reference_is_a_one_line_error(tmp_path):
    # SimpleITK reads a .nii.gz cut in half without an error (the missing voxels become 0):
    # the reference must go through the checked reader, which notices
    rng = np.random.default_rng(0)
    ref = (rng.random((40, 48, 48)) < 0.3).astype(np.uint8) * 2
    r = _write(tmp_path / "ref.nii.gz", ref)
    p = _write(tmp_path / "pred.nii.gz", ref)
    data = (tmp_path / "ref.nii.gz").read_bytes()
    (tmp_path / "ref.nii.gz").write_bytes(data[: len(data) // 2])
    sitk.ReadImage(r)  # the bare reader does not notice
    out = tmp_path / "x.tsv"
    with pytest.raises(InputError) as err:
        evaluate_case("BraTS_012", p, r, None, "brats2017", str(out))
    msg = str(err.value)
    assert "\n" not in msg
    assert "BraTS_012" in msg and r in msg and "reference" in msg and "truncated" in msg
    assert not out.exists()
