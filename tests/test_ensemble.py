"""Ensembles (tumorseg.inference.ensemble): which members predict a case (out of fold for
the cross-validation's cases), the averaging, and the split table as a run's scores see it."""

import numpy as np
import pandas as pd
import pytest

from tumorseg.inference.ensemble import average, members_for
from tumorseg.io.tables import read_folds, read_run_splits

FOLDS = [
    {"name": "unet", "fold": 0},
    {"name": "unet", "fold": 1},
    {"name": "unet", "fold": 2},
    {"name": "unet3d", "fold": 0},
    {"name": "unet3d", "fold": 1},
    {"name": "unet3d", "fold": 2},
]


def test_a_test_case_gets_every_member_and_a_fold_case_its_own_fold_only():
    assert members_for(FOLDS, -1) == list(range(6))
    assert members_for(FOLDS, 1) == [1, 4]  # out of fold: the models that did not train on it
    # a member without folds (a pretrained model) predicts every case
    mixed = [
        {"name": "unet", "fold": 0},
        {"name": "unet", "fold": 1},
        {"name": "old", "fold": None},
    ]
    assert members_for(mixed, 0) == [0, 2]
    with pytest.raises(ValueError, match="fold 5"):
        members_for(FOLDS, 5)


def test_the_average_weighs_each_model_once_whatever_its_folds():
    """Folds are averaged within a model, then the models: a 3-fold model and a 1-fold model
    weigh the same."""
    members = [{"name": "a", "fold": 0}, {"name": "a", "fold": 1}, {"name": "a", "fold": 2}]
    members.append({"name": "b", "fold": None})
    probs = [np.full((2, 3), v, np.float32) for v in (0.0, 0.3, 0.6, 1.0)]
    out = average(members, [0, 1, 2, 3], lambda i: probs[i])
    np.testing.assert_allclose(out, (0.3 + 1.0) / 2)
    assert out.dtype == np.float32


def test_an_ensemble_of_identical_members_is_the_member():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(5, 6, 7)).astype(np.float32)
    out = average(FOLDS, members_for(FOLDS, -1), lambda i: p)
    np.testing.assert_allclose(out, p, rtol=1e-6)
    assert np.array_equal(out.argmax(-1), p.argmax(-1))


@pytest.fixture
def splits(tmp_path):
    table = pd.DataFrame(
        {
            "case": ["a", "b", "c", "d", "e"],
            "subject": ["a", "b", "c", "d", "e"],
            "scanner": ["s"] * 5,
            "split": ["train", "train", "train", "test", "predict"],
            "fold": ["0", "1", "1", "-1", "-1"],
        }
    )
    path = tmp_path / "splits.tsv"
    table.to_csv(path, sep="\t", index=False)
    return path


def test_fold_and_ensemble_runs_validate_out_of_fold(splits):
    assert read_folds(splits) == {"a": 0, "b": 1, "c": 1, "d": -1, "e": -1}
    as_split = lambda fold: dict(read_run_splits(splits, fold)[["case", "split"]].values)  # noqa: E731
    assert as_split(None) == {"a": "train", "b": "train", "c": "train", "d": "test", "e": "predict"}
    assert as_split(1) == {"a": "train", "b": "val", "c": "val", "d": "test", "e": "predict"}
    assert as_split("all") == {"a": "val", "b": "val", "c": "val", "d": "test", "e": "predict"}


def test_folds_of_a_table_without_folds(tmp_path):
    path = tmp_path / "splits.tsv"
    pd.DataFrame({"case": ["a"], "subject": ["a"], "scanner": ["s"], "split": ["val"]}).to_csv(
        path, sep="\t", index=False
    )
    assert read_folds(path) == {"a": -1}
