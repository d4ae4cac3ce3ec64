"""Input pipeline: splits, slice tables, weighted sampling, streaming datasets, augmentation."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from training_fixtures import model_defaults, write_synthetic_cases

from tumorseg.errors import InputError
from tumorseg.training import data
from tumorseg.training.augment import random_affine

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
NO_AUGMENT = {"flip": False, "rotation": 0, "shift": 0, "zoom": 0, "shear": 0}
STRONG = {"flip": True, "rotation": 30, "shift": 0.1, "zoom": 0.2, "shear": 10}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    split = {"a": "train", "b": "train", "c": "train", "d": "val", "e": "test"}
    splits = write_synthetic_cases(root, split, depth=10, size=16, channels=2, seed=3)
    return root, splits


def test_synthetic_cases_follow_the_contract(cases):
    root, _ = cases
    image = np.load(root / "a" / "image.npy", mmap_mode="r", allow_pickle=False)
    label = np.load(root / "a" / "label.npy", mmap_mode="r", allow_pickle=False)
    table = pd.read_csv(root / "a" / "slices.tsv", sep="\t")
    assert image.dtype == np.float16 and image.shape == (10, 16, 16, 2)
    assert label.dtype == np.uint8 and label.shape == (10, 16, 16)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert list(table.columns) == ["case", "slice", "brain_voxels"] + data.voxel_columns(4)
    np.testing.assert_array_equal(table["voxels_3"], (label == 3).sum(axis=(1, 2)))


def test_read_split_plain_and_folds(tmp_path):
    assert data.read_split(write_splits(tmp_path, folds=False)) == (["a", "b"], ["c"])
    path = write_splits(tmp_path, folds=True)
    assert data.read_split(path, fold=0) == (["c", "d"], ["a", "b"])
    assert data.read_split(path, fold=1) == (["a", "b"], ["c", "d"])
    with pytest.raises(InputError, match="no validation cases for fold 2"):
        data.read_split(path, fold=2)
    with pytest.raises(InputError, match="no `fold` column"):
        data.read_split(write_splits(tmp_path, folds=False), fold=0)


def write_splits(folder, folds):
    rows = pd.DataFrame(
        {
            "case": ["a", "b", "c", "d", "t", "p"],
            "subject": ["a", "b", "c", "d", "t", "p"],
            "scanner": "s",
            "split": ["train", "train", "val" if not folds else "train", "test", "test", "predict"],
        }
    )
    if folds:
        rows["split"] = ["train", "train", "train", "train", "test", "predict"]
        rows["fold"] = [0, 0, 1, 1, -1, -1]
    path = folder / ("folds.tsv" if folds else "plain.tsv")
    rows.to_csv(path, sep="\t", index=False)
    return path


def test_read_slices_keeps_brain_slices_and_rejects_unlabelled(cases, tmp_path):
    root, _ = cases
    df = data.read_slices(root, ["a", "b"])
    assert set(df["case"]) == {"a", "b"}
    assert (df["brain_voxels"] > 0).all()
    assert 0 not in set(df["slice"]) and 9 not in set(df["slice"])  # empty end slices
    assert list(df.loc[df["case"] == "b", "case_index"].unique()) == [1]
    unlabelled = tmp_path / "u"
    unlabelled.mkdir()
    pd.DataFrame(
        {"case": "u", "slice": [0], "brain_voxels": [5], **dict.fromkeys(data.voxel_columns(4), "")}
    ).to_csv(unlabelled / "slices.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="case u: .*no label"):
        data.read_slices(tmp_path, ["u"])
    with pytest.raises(InputError, match="case zz: .*not found"):
        data.read_slices(tmp_path, ["zz"])


def test_reader_checks_the_arrays(cases, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "image.npy", np.zeros((3, 8, 8, 2), np.float16))
    np.save(bad / "label.npy", np.zeros((3, 8, 7), np.uint8))
    with pytest.raises(InputError, match="case bad: .*label.npy: label must be uint8"):
        data.SliceReader(tmp_path, ["bad"])


def test_slice_weights_formula():
    df = pd.DataFrame(
        {
            "voxels_0": [100] * 5,
            "voxels_1": [0, 0, 5, 10, 20],
            "voxels_2": [0, 0, 5, 10, 30],
            "voxels_3": [0, 0, 0, 10, 10],
        }
    )
    p = data.slice_weights(df, lesion_sampling=True, floor=0.2)
    np.testing.assert_allclose(p, [0.04, 0.04, 0.12, 0.28, 0.52])
    np.testing.assert_allclose(data.slice_weights(df, False, 0.2), 0.2)
    np.testing.assert_allclose(data.slice_weights(df, True, 0.0), [0, 0, 0.1, 0.3, 0.6])
    empty = df.assign(voxels_1=0, voxels_2=0, voxels_3=0)
    np.testing.assert_allclose(data.slice_weights(empty, True, 0.2), 0.2)


def test_weighted_draws_follow_the_probabilities():
    p = np.array([0.04, 0.04, 0.12, 0.28, 0.52])
    n = 100_000
    draws = data.draw_epoch(p, n, seed=5, epoch=0, weighted=True)
    freq = np.bincount(draws, minlength=5) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sigma)
    again = data.draw_epoch(p, n, seed=5, epoch=0, weighted=True)
    np.testing.assert_array_equal(draws, again)
    assert not np.array_equal(draws, data.draw_epoch(p, n, seed=5, epoch=1, weighted=True))
    # unweighted: shuffled passes, each slice once per pass
    passes = data.draw_epoch(np.full(7, 1 / 7), 21, seed=5, epoch=0, weighted=False)
    for k in range(3):
        assert sorted(passes[7 * k : 7 * (k + 1)]) == list(range(7))


def train_settings(**overrides):
    s = model_defaults(SCHEMA)
    s.update(batch_size=4, augment=dict(NO_AUGMENT))
    s.update(overrides)
    return s


def test_train_dataset_streams_the_drawn_slices(cases):
    root, splits = cases
    train, _ = data.read_split(splits)
    slices = data.read_slices(root, train)
    reader = data.SliceReader(root, train)
    s = train_settings(sampling_floor=0.3)
    ds = data.make_train_dataset(reader, slices, s, steps_per_epoch=6, epochs=3, start_epoch=1)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 12  # epochs 1 and 2 only
    p = data.slice_weights(slices, True, 0.3)
    for epoch in (1, 2):
        rows = data.draw_epoch(p, 24, s["seed"], epoch, weighted=True)
        images, labels = reader.read(
            slices["case_index"].to_numpy()[rows], slices["slice"].to_numpy()[rows]
        )
        got = batches[(epoch - 1) * 6 : epoch * 6]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), images)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in got]).argmax(-1), labels)
    x, y = batches[0]
    assert x.shape == (4, 16, 16, 2) and x.dtype == np.float32
    assert y.shape == (4, 16, 16, 4) and np.all(y.sum(-1) == 1)


def test_augmented_train_dataset_is_seeded(cases):
    root, splits = cases
    train, _ = data.read_split(splits)
    slices = data.read_slices(root, train)
    reader = data.SliceReader(root, train)
    s = train_settings(augment=dict(STRONG))
    first = list(data.make_train_dataset(reader, slices, s, 3, 1).as_numpy_iterator())
    second = list(data.make_train_dataset(reader, slices, s, 3, 1).as_numpy_iterator())
    plain = list(
        data.make_train_dataset(reader, slices, train_settings(), 3, 1).as_numpy_iterator()
    )
    for a, b, c in zip(first, second, plain, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(a[0], c[0])


def test_datasets_run_deterministic_on_their_own_threads_without_autotuning(cases):
    root, splits = cases
    train, val = data.read_split(splits)
    reader = data.SliceReader(root, train)
    slices = data.read_slices(root, train)
    made = [
        data.make_train_dataset(reader, slices, train_settings(), 3, 1, threads=3),
        data.make_val_dataset(reader, slices, 4, threads=3),
    ]
    for ds in made:
        options = ds.options()
        assert options.deterministic is True
        assert options.threading.private_threadpool_size == 3
        assert options.autotune.enabled is False


def test_val_dataset_reads_every_slice_in_order(cases):
    root, splits = cases
    _, val = data.read_split(splits)
    slices = data.read_slices(root, val)
    reader = data.SliceReader(root, val)
    batches = list(data.make_val_dataset(reader, slices, batch_size=3).as_numpy_iterator())
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches]).argmax(-1)
    expected = np.load(root / "d" / "image.npy")[slices["slice"].to_numpy()]
    np.testing.assert_array_equal(images, expected.astype(np.float32))
    np.testing.assert_array_equal(
        labels, np.load(root / "d" / "label.npy")[slices["slice"].to_numpy()]
    )


def block_pattern(n, size, block, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 4, size=(n, size // block, size // block))
    return np.kron(coarse, np.ones((1, block, block), int)).astype(np.uint8)


def test_augmentation_keeps_image_and_label_aligned():
    labels = block_pattern(16, 48, 8, seed=0)
    # channel 0 = class, channel 1 = class squared: where the bilinear image equals k and
    # k**2 there, every pixel it interpolated from holds class k (zero variance)
    images = np.stack([labels, labels.astype(float) ** 2], axis=-1).astype(np.float32)
    out_img, out_lab = random_affine(tf.constant(images), tf.constant(labels), STRONG, [7, 1])
    out_img, out_lab = out_img.numpy(), out_lab.numpy()
    assert out_lab.dtype == np.uint8 and out_lab.shape == labels.shape
    assert set(np.unique(out_lab)) <= {0, 1, 2, 3}
    assert not np.array_equal(out_lab, labels)
    k = np.round(out_img[..., 0])
    interior = (np.abs(out_img[..., 0] - k) < 1e-4) & (np.abs(out_img[..., 1] - k**2) < 1e-3)
    assert interior.mean() > 0.5
    np.testing.assert_array_equal(out_lab[interior], k[interior].astype(np.uint8))
    # a label only takes values found in its own slice (or 0 from outside the slice)
    for before, after in zip(labels, out_lab, strict=True):
        assert set(np.unique(after)) <= set(np.unique(before)) | {0}
    # same seed, same transform; another seed, another one
    again = random_affine(tf.constant(images), tf.constant(labels), STRONG, [7, 1])
    np.testing.assert_array_equal(again[1].numpy(), out_lab)
    other = random_affine(tf.constant(images), tf.constant(labels), STRONG, [7, 2])
    assert not np.array_equal(other[1].numpy(), out_lab)


@pytest.mark.parametrize("settings", ["defaults", "strong"])
def test_keras_warp_is_bit_identical_to_the_raw_tensorflow_op(settings):
    """augment.apply_transforms (keras.ops.image.affine_transform) gives exactly what the
    raw ImageProjectiveTransformV3 op gave: bilinear images, nearest uint8 labels, and the
    constant 0 fill at the borders (training outputs are pinned by a workflow test)."""
    from tumorseg.training.augment import apply_transforms, random_transforms

    augment = model_defaults(SCHEMA)["augment"] if settings == "defaults" else STRONG
    rng = np.random.default_rng(5)
    images = tf.constant(rng.normal(size=(8, 96, 96, 4)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 4, size=(8, 96, 96, 1)).astype(np.uint8))
    transforms = random_transforms(8, 96, 96, augment, [3, 9])
    for batch, interpolation in ((images, "BILINEAR"), (labels, "NEAREST")):
        raw = tf.raw_ops.ImageProjectiveTransformV3(
            images=batch,
            transforms=transforms,
            output_shape=tf.shape(batch)[1:3],
            fill_value=tf.constant(0.0, tf.float32),
            interpolation=interpolation,
            fill_mode="CONSTANT",
        ).numpy()
        ours = apply_transforms(batch, transforms, interpolation).numpy()
        assert ours.dtype == raw.dtype and (raw == 0).any()  # some fill from outside
        np.testing.assert_array_equal(ours, raw)


def test_flip_only_flips_image_and_label_together():
    labels = block_pattern(16, 16, 4, seed=1)
    images = np.random.default_rng(2).normal(size=(16, 16, 16, 3)).astype(np.float32)
    flip = dict(NO_AUGMENT, flip=True)
    out_img, out_lab = random_affine(tf.constant(images), tf.constant(labels), flip, [3, 4])
    flipped = []
    for i in range(16):
        if np.array_equal(out_lab[i], labels[i]):
            np.testing.assert_allclose(out_img[i], images[i], atol=1e-6)
            flipped.append(False)
        else:
            np.testing.assert_array_equal(out_lab[i], labels[i][:, ::-1])
            np.testing.assert_allclose(out_img[i], images[i][:, ::-1], atol=1e-6)
            flipped.append(True)
    assert 0 < sum(flipped) < 16
    same_img, same_lab = random_affine(tf.constant(images), tf.constant(labels), NO_AUGMENT, [1, 1])
    assert same_img is not None and np.array_equal(same_lab, labels)
