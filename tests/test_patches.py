"""3D patch input: reading with padding, tumour-fraction sampling, augmentation, tiles."""

import numpy as np
import pytest
import tensorflow as tf

from tumorseg.errors import InputError
from tumorseg.training import patches
from tumorseg.training.patches import (
    FALLBACK,
    MET,
    NO_TUMOUR,
    UNCONSTRAINED,
    PatchReader,
    PatchSampler,
)
from tumorseg.training.sliding_window import tile_starts

NO_AUGMENT = {"flip": False, "rotation": 0, "shift": 0, "zoom": 0, "shear": 0}
STRONG = {"flip": True, "rotation": 30, "shift": 0.1, "zoom": 0.2, "shear": 10}


def write_case(root, case, image, label):
    folder = root / case
    folder.mkdir(parents=True)
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", label)


def blob(shape, centre, radius, value=2):
    zz, yy, xx = np.indices(shape)
    dist2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    return np.where(dist2 <= radius**2, value, 0).astype(np.uint8)


def sampling_labels():
    """A blob of tumour, no tumour, and a tumour too small for 5 % of an 8x8x8 patch."""
    shape = (20, 24, 24)
    tiny = np.zeros(shape, np.uint8)
    tiny[3, 20, 1:5] = 1  # 4 voxels < 0.05 * 512
    return [blob(shape, (10, 12, 12), 3), np.zeros(shape, np.uint8), tiny]


def brute_count(label, start, patch):
    box = tuple(slice(max(s, 0), s + p) for s, p in zip(start, patch, strict=True))
    return int(np.count_nonzero(label[box] > 0))


def test_integral_image_counts_equal_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 9, 11)) < 0.3
    sat = patches.integral_image(mask)
    assert sat.dtype == np.int32 and sat[-1, -1, -1] == mask.sum()
    starts = rng.integers(-2, 12, size=(300, 3))
    for patch in [(3, 4, 5), (10, 4, 2)]:  # the second longer than the volume in z
        got = patches.box_sums(sat, starts, patch)
        expected = [brute_count(mask, s, patch) for s in starts]
        np.testing.assert_array_equal(got, expected)
        table = patches.start_counts(sat, patch)
        assert table.shape == tuple(
            max(0, s - p) + 1 for s, p in zip(mask.shape, patch, strict=True)
        )
        for start in np.ndindex(table.shape):
            assert table[start] == brute_count(mask, start, patch)


def test_sampler_honours_the_tumour_fraction():
    labels = sampling_labels()
    patch_xyz, patch = (8, 8, 8), np.array((8, 8, 8))
    sampler = PatchSampler(labels, patch_xyz, min_tumour_fraction=0.05, seed=3)
    n = 2000
    case, starts, kind = sampler.draw_detailed(epoch=0, n=n)
    assert case.dtype == np.int64 and starts.shape == (n, 3)
    assert np.all(starts >= 0) and np.all(starts + patch <= (20, 24, 24))  # inside the volumes
    frac = (
        np.array([brute_count(labels[c], s, patch) for c, s in zip(case, starts, strict=True)])
        / 512
    )
    np.testing.assert_array_equal(sampler.fraction(case, starts), frac)
    # every constrained patch reaches 5 %, except the counted fallbacks and tumour-free cases
    assert np.all(frac[kind == MET] >= 0.05)
    assert np.all(frac[kind == FALLBACK] > 0)  # centred on a tumour voxel
    assert set(case[kind == NO_TUMOUR]) == {1} and np.all(kind[case == 1] != MET)
    assert np.all(kind[(case == 2) & (kind != UNCONSTRAINED)] == FALLBACK)  # never 5 %
    on_blob = (case == 0) & (kind != UNCONSTRAINED)
    assert np.mean(kind[on_blob] == MET) > 0.2 and np.any(kind[on_blob] == FALLBACK)
    # the unconstrained share and the uniform choice of cases, within 4 binomial sd
    for count, p in [
        (np.sum(kind == UNCONSTRAINED), 0.33),
        *[(np.sum(case == c), 1 / 3) for c in range(3)],
    ]:
        assert abs(count - n * p) < 4 * np.sqrt(n * p * (1 - p))
    # unconstrained patches of the blob case rarely hold 5 %: the rule changes the data
    assert np.mean(frac[(case == 0) & (kind == UNCONSTRAINED)] >= 0.05) < 0.3
    expected = {"draws": n, "unconstrained": int(np.sum(kind == UNCONSTRAINED))}
    expected.update(met=int(np.sum(kind == MET)), fallbacks=int(np.sum(kind == FALLBACK)))
    expected["no_tumour"] = int(np.sum(kind == NO_TUMOUR))
    assert sampler.epoch_stats[0] == expected and sampler.stats == expected
    sampler.draw(1, 10)
    assert sampler.stats["draws"] == n + 10 and sampler.epoch_stats[1]["draws"] == 10


def test_draws_are_deterministic_per_seed_and_epoch():
    labels = sampling_labels()
    first = PatchSampler(labels, (8, 8, 8), seed=5).draw(2, 100)
    again = PatchSampler(labels, (8, 8, 8), seed=5).draw(2, 100)
    other_epoch = PatchSampler(labels, (8, 8, 8), seed=5).draw(3, 100)
    other_seed = PatchSampler(labels, (8, 8, 8), seed=6).draw(2, 100)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other_epoch[1])
    assert not np.array_equal(first[1], other_seed[1])
    # no constraint: every draw is kept where it fell
    free = PatchSampler(labels, (8, 8, 8), unconstrained_share=1.0).draw_detailed(0, 50)
    assert np.all(free[2] == UNCONSTRAINED)


def test_reader_pads_a_volume_smaller_than_the_patch(tmp_path):
    rng = np.random.default_rng(1)
    small = rng.normal(size=(3, 5, 6, 2)).astype(np.float16)
    small_label = rng.integers(0, 3, size=(3, 5, 6)).astype(np.uint8)
    big = rng.normal(size=(10, 12, 12, 2)).astype(np.float16)
    big_label = rng.integers(0, 3, size=(10, 12, 12)).astype(np.uint8)
    write_case(tmp_path, "small", small, small_label)
    write_case(tmp_path, "big", big, big_label)
    reader = PatchReader(tmp_path, ["small", "big"], n_classes=3, patch_xyz=(8, 7, 4))
    assert reader.patch == (4, 7, 8) and reader.shapes == [(3, 5, 6), (10, 12, 12)]
    images, labels = reader.read([0, 1, 1], [[0, 0, 0], [8, 9, 1], [2, 3, 4]])
    assert images.shape == (3, 4, 7, 8, 2) and images.dtype == np.float32
    assert labels.shape == (3, 4, 7, 8) and labels.dtype == np.uint8
    np.testing.assert_array_equal(images[0, :3, :5, :6], small.astype(np.float32))
    np.testing.assert_array_equal(labels[0, :3, :5, :6], small_label)
    assert not images[0, 3:].any() and not images[0, :, 5:].any() and not images[0, :, :, 6:].any()
    assert not labels[0, 3:].any() and not labels[0, :, 5:].any() and not labels[0, :, :, 6:].any()
    np.testing.assert_array_equal(images[1, :2, :3], big[8:, 9:, 1:9].astype(np.float32))
    assert not images[1, 2:].any() and not labels[1, :, 3:].any()
    np.testing.assert_array_equal(labels[2], big_label[2:6, 3:10, 4:12])
    # the sampler's only start on a short axis is 0
    case, starts = PatchSampler(reader, (8, 7, 4), unconstrained_share=1).draw(0, 200)
    assert np.all(starts[case == 0] == 0)
    assert np.all(starts[case == 1] <= [6, 5, 4]) and np.all(starts[case == 1] >= 0)
    assert np.all(starts[case == 1].max(0) == [6, 5, 4])


def test_reader_and_sampler_reject_bad_cases(tmp_path):
    good = np.zeros((4, 5, 6, 2), np.float16)
    write_case(tmp_path, "ok", good, np.zeros((4, 5, 6), np.uint8))
    write_case(tmp_path, "int", good.astype(np.int16), np.zeros((4, 5, 6), np.uint8))
    write_case(tmp_path, "shape", good, np.zeros((4, 5, 7), np.uint8))
    write_case(tmp_path, "chan", np.zeros((4, 5, 6, 3), np.float16), np.zeros((4, 5, 6), np.uint8))
    write_case(tmp_path, "unl", good, np.full((4, 5, 6), 255, np.uint8))
    for case, message in [("int", "float"), ("shape", "uint8 of shape"), ("missing", "not found")]:
        with pytest.raises(InputError, match=message) as err:
            PatchReader(tmp_path, ["ok", case], 3, (4, 4, 4))
        assert err.value.case == case
    with pytest.raises(InputError, match="channels"):
        PatchReader(tmp_path, ["ok", "chan"], 3, (4, 4, 4))
    reader = PatchReader(tmp_path, ["ok", "unl"], 3, (4, 4, 4))
    with pytest.raises(InputError, match="unlabelled") as err:
        PatchSampler(reader, (4, 4, 4))
    assert err.value.case == "unl" and err.value.path.endswith("label.npy")
    with pytest.raises(ValueError, match="unlabelled"):
        reader.read([1], [[0, 0, 0]])


def block_labels(n, z, size, block, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(n, z, size // block, size // block))
    return np.kron(coarse, np.ones((1, 1, block, block), int)).astype(np.uint8)


def test_augmentation_moves_image_and_label_alike():
    labels = block_labels(4, 3, 32, 8, seed=0)
    # channel 0 = class, channel 1 = class squared: where the bilinear image equals k and
    # k**2, every voxel it interpolated from holds class k (so nearest must give k too)
    images = np.stack([labels, labels.astype(float) ** 2], axis=-1).astype(np.float32)
    out_img, out_lab = patches.random_affine_3d(
        tf.constant(images), tf.constant(labels), STRONG, [7, 1]
    )
    out_img, out_lab = out_img.numpy(), out_lab.numpy()
    assert out_img.shape == images.shape and out_lab.shape == labels.shape
    assert out_lab.dtype == np.uint8 and not np.array_equal(out_lab, labels)
    k = np.round(out_img[..., 0])
    interior = (np.abs(out_img[..., 0] - k) < 1e-4) & (np.abs(out_img[..., 1] - k**2) < 1e-3)
    assert interior.mean() > 0.5
    np.testing.assert_array_equal(out_lab[interior], k[interior].astype(np.uint8))
    # the bilinear image takes values between classes somewhere; the label never does
    assert np.any(np.abs(out_img[..., 0] - k) > 0.1)
    assert set(np.unique(out_lab)) <= {0, 1, 2, 3}
    # one transform per patch: slices that were equal stay equal
    same = np.repeat(labels[:, :1], 3, axis=1)
    _, out_same = patches.random_affine_3d(
        tf.constant(np.repeat(images[:, :1], 3, axis=1)), tf.constant(same), STRONG, [7, 1]
    )
    out_same = out_same.numpy()
    for z in range(1, 3):
        np.testing.assert_array_equal(out_same[:, z], out_same[:, 0])
    np.testing.assert_array_equal(out_same[:, 0], out_lab[:, 0])
    # with flips only: a patch is flipped along x (all its slices) or left alone
    flip = dict(NO_AUGMENT, flip=True)
    flipped_img, flipped = patches.random_affine_3d(
        tf.constant(images), tf.constant(labels), flip, [3, 4]
    )
    kinds = set()
    for i in range(4):
        if np.array_equal(flipped[i], labels[i]):
            kinds.add("same")
            np.testing.assert_allclose(flipped_img[i], images[i], atol=1e-6)
        else:
            kinds.add("flipped")
            np.testing.assert_array_equal(flipped[i], labels[i][:, :, ::-1])
            np.testing.assert_allclose(flipped_img[i], images[i][:, :, ::-1], atol=1e-6)
    assert kinds == {"same", "flipped"}


def test_patch_standardisation_over_non_zero_voxels():
    rng = np.random.default_rng(2)
    images = rng.normal(3, 2, size=(2, 4, 5, 6, 3)).astype(np.float32)
    images[:, :, :2] = 0  # outside the brain
    images[1, ..., 2] = np.where(images[1, ..., 2] != 0, 5.0, 0)  # no spread
    out = patches.standardise_patches(images)
    inside = images[0, ..., 0] != 0
    assert out.dtype == np.float32 and np.all(out[images == 0] == 0)
    for i in range(2):
        for c in range(2):
            values = out[i, ..., c][inside]
            assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-5
    assert np.all(out[1, ..., 2] == 0)  # only centred


@pytest.mark.parametrize(
    ("shape", "patch_xyz"),
    [((20, 24, 24), (8, 8, 8)), ((77, 96, 96), (96, 96, 16)), ((5, 9, 3), (4, 4, 8))],
)
def test_validation_tiles_cover_every_voxel(shape, patch_xyz):
    starts = patches.validation_tiles(shape, patch_xyz)
    patch = patch_xyz[::-1]
    cover = np.zeros(shape, int)
    for s in starts:
        cover[tuple(slice(a, a + p) for a, p in zip(s, patch, strict=True))] += 1
    assert cover.min() >= 1
    assert np.all(starts >= 0) and len(np.unique(starts, axis=0)) == len(starts)
    for axis in range(3):  # the last tile of an axis ends flush with it
        assert starts[:, axis].max() == max(0, shape[axis] - patch[axis])
    np.testing.assert_array_equal(starts, patches.validation_tiles(shape, patch_xyz))
    # the windows of inference, with its overlap
    for overlap in (0.5, 0.25):
        np.testing.assert_array_equal(
            patches.validation_tiles(shape, patch_xyz, overlap), tile_starts(shape, patch, overlap)
        )


@pytest.fixture
def volumes(tmp_path):
    rng = np.random.default_rng(4)
    for i, case in enumerate(["a", "b", "c"]):
        label = blob((10, 16, 16), (4 + i, 8, 7), 3, value=1 + i % 3)
        image = (rng.normal(size=(10, 16, 16, 2)) + label[..., None]).astype(np.float16)
        write_case(tmp_path, case, image, label)
    return tmp_path


def settings(**overrides):
    return {"batch_size": 3, "seed": 1, "augment": dict(NO_AUGMENT), **overrides}


def test_train_dataset_streams_the_drawn_patches(volumes):
    reader = PatchReader(volumes, ["a", "b", "c"], 4, (8, 8, 4))
    sampler = PatchSampler(reader, (8, 8, 4), seed=1)
    ds = patches.make_patch_train_dataset(reader, sampler, settings(), 2, epochs=3, start_epoch=1)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 4  # epochs 1 and 2
    x, y = batches[0]
    assert x.shape == (3, 4, 8, 8, 2) and x.dtype == np.float32
    assert y.shape == (3, 4, 8, 8, 4) and np.all(y.sum(-1) == 1)
    fresh = PatchSampler(reader, (8, 8, 4), seed=1)
    for epoch in (1, 2):
        images, labels = reader.read(*fresh.draw(epoch, 6))
        got = batches[2 * (epoch - 1) : 2 * epoch]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), images)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in got]).argmax(-1), labels)
    # augmented and standardised: the same again for the same seed
    strong = settings(augment=dict(STRONG), patch_standardise=True)
    runs = [
        list(
            patches.make_patch_train_dataset(
                reader, PatchSampler(reader, (8, 8, 4), seed=1), strong, 2, 1
            ).as_numpy_iterator()
        )
        for _ in range(2)
    ]
    for a, b, plain in zip(*runs, batches, strict=False):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], plain[0])


def test_patch_datasets_take_the_slice_datasets_options(volumes):
    reader = PatchReader(volumes, ["a", "b"], 4, (8, 8, 4))
    sampler = PatchSampler(reader, (8, 8, 4), seed=1)
    made = [patches.make_patch_train_dataset(reader, sampler, settings(), 2, 1, threads=3)]
    for ds in made:
        options = ds.options()
        assert options.deterministic is True
        assert options.threading.private_threadpool_size == 3
        assert options.autotune.enabled is False
