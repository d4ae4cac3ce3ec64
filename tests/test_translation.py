"""Image translation: the target through preprocessing and back, the paired augmentation,
the regression model and losses, the workflow's checks of the task settings."""

import numpy as np
import pytest
import SimpleITK as sitk
from synth import BRATS_GRID, MODS, preprocess, write_case

from tumorseg.errors import InputError
from tumorseg.preprocessing import geometry as geo

RAS_12 = {  # another scanner's grid: 1.2 mm, RAS, smaller
    "size": (200, 200, 130),
    "spacing": (1.2, 1.2, 1.2),
    "origin": (119.4, 119.4, -77.4),
    "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


def translated(tmp_path, grid, case="t1c"):
    paths = write_case(tmp_path, case, grid)
    inputs = {"images": {"t1": paths["t1"]}, "image": None, "target": paths["t2"]}
    rec, out = preprocess(
        case,
        {"t1": paths["t1"], **{m: paths[m] for m in MODS}},
        tmp_path / "out",
        seg=None,
        modalities=["t1"],
        image_channels=["t1"],
        target="t2",
        _inputs=inputs,
    )
    return paths, rec, out


@pytest.mark.parametrize("grid", [BRATS_GRID, RAS_12], ids=["brats_lps", "ras_1.2mm"])
def test_target_goes_through_preprocessing_and_back(tmp_path, grid):
    paths, rec, out = translated(tmp_path, grid)
    target = np.load(out["target.npy"], allow_pickle=False)
    assert target.shape == (77, 96, 96) and target.dtype == np.float16
    assert rec["task"] == "translation" and rec["has_target"] and rec["target"] == "t2"
    real = sitk.GetArrayFromImage(sitk.ReadImage(paths["t2"])).astype(np.float64)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(paths["t1"])) > 0
    stats = rec["target_normalisation"]
    if not rec["resampled"]:  # (resampling blurs the brain's rim into the statistics)
        assert stats["mean"] == pytest.approx(real[brain].mean(), rel=0.02)
        assert stats["std"] == pytest.approx(real[brain].std(), rel=0.05)
    back = geo.values_to_native(target.astype(np.float32), rec)
    assert geo.Grid.from_image(back) == geo.Grid.from_image(sitk.ReadImage(paths["t2"]))
    z_real = (real - stats["mean"]) / stats["std"]
    got = sitk.GetArrayFromImage(back)
    core = brain & (np.abs(got) > 0)  # away from the crop and the brain's rim
    err = np.abs(got[core] - z_real[core])
    assert np.median(err) < 0.35, np.median(err)  # a piecewise-constant phantom, halved


def test_target_is_optional(tmp_path):
    paths = write_case(tmp_path, "t2c", BRATS_GRID)
    rec, out = preprocess(
        "t2c",
        {m: paths[m] for m in MODS},
        tmp_path / "out",
        seg=None,
        modalities=["t1"],
        image_channels=["t1"],
        target="t2",
        _inputs={"images": {"t1": paths["t1"]}, "image": None, "target": None},
    )
    assert not rec["has_target"] and "target_normalisation" not in rec
    assert np.isnan(np.load(out["target.npy"])).all()


def test_paired_augmentation_moves_input_and_target_alike(tmp_path):
    import pandas as pd

    from tumorseg.training import data

    rng = np.random.default_rng(0)
    folder = tmp_path / "pre" / "c1"
    folder.mkdir(parents=True)
    image = rng.normal(size=(6, 32, 32, 2)).astype(np.float16)
    np.save(folder / "image.npy", image, allow_pickle=False)
    np.save(folder / "target.npy", image[..., 0], allow_pickle=False)  # target = channel 0
    slices = pd.DataFrame(
        {"case": "c1", "case_index": 0, "slice": range(6), "brain_voxels": 100, "has_target": 1}
    )
    reader = data.SliceReader(tmp_path / "pre", ["c1"], n_classes=0)
    settings = {
        "batch_size": 4,
        "seed": 3,
        "lesion_sampling": False,
        "sampling_floor": 0.2,
        "augment": {"flip": True, "rotation": 20, "shift": 0.1, "zoom": 0.1, "shear": 5},
    }
    ds = data.make_train_dataset(reader, slices, settings, 2, 1, threads=1)
    for images, targets in ds:
        assert targets.shape == (4, 32, 32, 1) and targets.dtype.name == "float32"
        np.testing.assert_array_equal(images.numpy()[..., :1], targets.numpy())
        assert not np.array_equal(images.numpy()[..., 0], image[:4, ..., 0])  # it moved
    val = next(iter(data.make_val_dataset(reader, slices, 4, threads=1)))
    np.testing.assert_array_equal(val[1].numpy()[..., 0], image[:4, ..., 0].astype(np.float32))


def test_regression_model_and_losses():
    import keras

    from tumorseg.training.losses import TranslationLoss, slice_ssim
    from tumorseg.training.models import build_model

    settings = {
        "architecture": "unet",
        "depth": 2,
        "base_filters": 4,
        "batch_norm": True,
        "dropout": 0.0,
        "upsampling": "transpose",
        "kernel_size": 3,
        "seed": 1,
    }
    model = build_model(settings, 1, 1, input_size=32, output="linear")
    assert model.output_shape == (None, 32, 32, 1)
    assert model.layers[-1].get_config()["activation"] == "linear"
    y = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype(np.float32)
    assert float(TranslationLoss("mae")(y, y + 0.5)) == pytest.approx(0.5, abs=1e-6)
    assert float(TranslationLoss("mse")(y, y + 0.5)) == pytest.approx(0.25, abs=1e-6)
    assert float(slice_ssim(y, y)) == pytest.approx(1.0, abs=1e-5)
    both = float(TranslationLoss("mae_ssim")(y, y + 0.5))
    assert both > 0.5  # MAE plus the SSIM lost to the shift
    assert isinstance(
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(TranslationLoss("mse"))
        ),
        TranslationLoss,
    )
    with pytest.raises(InputError, match="unknown translation loss"):
        TranslationLoss("dice")


def test_task_settings_are_checked():
    from tumorseg.workflow_config import check_task

    base = {"translation": {"inputs": ["t1"], "target": "t2"}}
    check_task({**base, "task": "translation", "models": {"u": {"loss": "mae"}}})
    with pytest.raises(InputError, match="not a translation loss"):
        check_task({**base, "task": "translation", "models": {"u": {"loss": "dice_ce"}}})
    with pytest.raises(InputError, match="not a segmentation loss"):
        check_task({**base, "task": "segmentation", "models": {"u": {"loss": "mae"}}})
    with pytest.raises(InputError, match="also an input"):
        check_task(
            {
                "translation": {"inputs": ["t1", "t2"], "target": "t2"},
                "task": "translation",
                "models": {},
            }
        )
    with pytest.raises(InputError, match="the 3D U-Net segments"):
        check_task(
            {
                **base,
                "task": "translation",
                "models": {"u": {"loss": "mae", "architecture": "unet3d"}},
            }
        )


def test_translation_sheet_needs_modality_columns(tmp_path):
    import pandas as pd

    from tumorseg.workflow_config import _target_as_reference

    sheet = pd.DataFrame({"case": ["a"], "image": ["a.nii.gz"]})
    with pytest.raises(InputError, match="one column per modality"):
        _target_as_reference(sheet, "t2", tmp_path / "s.tsv")
    with pytest.raises(InputError, match="no `t2` column"):
        _target_as_reference(pd.DataFrame({"case": ["a"], "t1": ["a"]}), "t2", "s.tsv")
    both = pd.DataFrame({"case": ["a"], "t1": ["x"], "t2": ["y"], "seg": ["z"]})
    assert _target_as_reference(both, "t2", "s.tsv")["seg"].tolist() == ["y"]


def test_synthetic_image_in_z_scores_or_the_training_scale(tmp_path):
    import json

    from tumorseg.inference.synthesis import predict_translation_case
    from tumorseg.training.assemble import build

    paths, rec, out = translated(tmp_path, BRATS_GRID, case="s1")
    settings = {
        "architecture": "unet", "depth": 2, "base_filters": 4, "batch_norm": False,
        "dropout": 0.0, "upsampling": "transpose", "kernel_size": 3, "seed": 2,
    }  # fmt: skip
    model_path = tmp_path / "m.keras"
    build(settings, 1, 96, None).save(model_path)
    args = (str(model_path), out["image.npy"], out["geometry.json"], [paths["t1"]], 32)
    predict_translation_case("s1", *args, str(tmp_path / "z.nii.gz"))
    scale = tmp_path / "scale.json"
    scale.write_text(json.dumps({"mean": 500.0, "std": 100.0, "cases": 3}))
    predict_translation_case("s1", *args, str(tmp_path / "i.nii.gz"), scale_json=str(scale))
    z = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "z.nii.gz")))
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "i.nii.gz")))
    brain = sitk.GetArrayFromImage(sitk.ReadImage(paths["t1"])) > 0
    assert not z[~brain].any() and not raw[~brain].any()  # 0 outside the brain either way
    np.testing.assert_allclose(raw[brain], z[brain] * 100.0 + 500.0, rtol=1e-5, atol=1e-3)
