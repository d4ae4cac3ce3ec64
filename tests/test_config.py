"""Config schema: defaults, validation at start-up, and the generated key reference."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from tumorseg.errors import InputError
from tumorseg.schema_doc import render
from tumorseg.workflow_config import (
    check_config,
    ensemble_members,
    ensemble_runs,
    member_runs,
    model_runs,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def load(extra=None):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key, value in (extra or {}).items():
        config[key] = value
    validate(config, schema=SCHEMA)
    return config


def test_config_readme_is_up_to_date():
    assert (ROOT / "config/README.md").read_text() == render(SCHEMA), (
        "regenerate: python -m tumorseg.schema_doc > config/README.md"
    )


def test_every_schema_key_has_a_description():
    text = render(SCHEMA)
    rows = [r for r in text.splitlines() if r.startswith("| `")]
    assert len(rows) > 50
    assert all(not r.rstrip().endswith("|  |") for r in rows), [
        r for r in rows if r.endswith("|  |")
    ]


def test_defaults_are_filled_for_models():
    config = load({"models": {"a": {}, "b": {"depth": 2}}})
    assert config["models"]["a"]["depth"] == 4 and config["models"]["b"]["depth"] == 2
    assert config["models"]["a"]["augment"]["flip"] is True
    assert config["split"]["ratios"] == {"train": 0.7, "val": 0.15, "test": 0.15}


@pytest.mark.parametrize(
    "extra",
    [
        {"label_convention": "brats2019"},
        {"models": {"bad-name": {}}},
        {"models": {"m": {"depth": 0}}},
        {"models": {"m": {"unknown_key": 1}}},
        {"split": {"cv_folds": 1}},
        {"preprocess": {"crop": {"size": [192]}}},
        {"predict": {"tta": "rotate"}},
        {"evaluation": {"lesion_wise": "glioma"}},
    ],
)
def test_schema_rejects(extra):
    with pytest.raises(Exception, match="(?i)validat"):
        load(extra)


def test_checks_beyond_the_schema():
    with pytest.raises(InputError, match="must sum to 1"):
        check_config(load({"split": {"ratios": {"train": 0.5, "val": 0.2, "test": 0.2}}}))
    with pytest.raises(InputError, match="larger than the canonical grid"):
        check_config(load({"preprocess": {"crop": {"size": [300, 192]}}}))
    with pytest.raises(InputError, match="uncertainty needs several predictions"):
        check_config(load({"predict": {"uncertainty": True}}))  # nothing averaged
    check_config(load({"predict": {"uncertainty": True}, "split": {"cv_folds": 2}}))
    with pytest.raises(InputError, match="pretrained names models not in `models`"):
        check_config(load({"pretrained": {"other": "x.keras"}}))


def test_model_runs_with_folds():
    config = load(
        {"split": {"cv_folds": 3}, "models": {"unet": {}, "cnn": {"architecture": "cnn"}}}
    )
    assert list(model_runs(config)) == [f"{m}.fold{k}" for m in ("unet", "cnn") for k in range(3)]
    assert model_runs(config)["cnn.fold2"] == ("cnn", 2)
    assert ensemble_runs(config) == {"unet.ensemble": ["unet"], "cnn.ensemble": ["cnn"]}
    assert ensemble_members(config, ["cnn"]) == [("cnn", f"cnn.fold{k}", k) for k in range(3)]


def test_ensembles_of_architectures():
    """`ensembles` entries average their members (each the average of its folds); an
    ensemble competes with each member's fold ensemble, or its run without folds."""
    models = {"unet": {}, "unet3d": {"architecture": "unet3d"}}
    config = load({"models": models, "ensembles": {"both": ["unet", "unet3d"]}})
    check_config(config)
    assert ensemble_runs(config) == {"both": ["unet", "unet3d"]}
    assert ensemble_members(config, ["unet", "unet3d"]) == [
        ("unet", "unet", None),
        ("unet3d", "unet3d", None),
    ]
    assert member_runs(config, ["unet", "unet3d"]) == ["unet", "unet3d"]
    config = load(
        {"models": models, "ensembles": {"both": ["unet", "unet3d"]}, "split": {"cv_folds": 2}}
    )
    assert list(ensemble_runs(config)) == ["unet.ensemble", "unet3d.ensemble", "both"]
    assert member_runs(config, ["unet", "unet3d"]) == ["unet.ensemble", "unet3d.ensemble"]
    assert len(ensemble_members(config, ["unet", "unet3d"])) == 4
    for ensembles, message in (
        ({"unet": ["unet", "unet3d"]}, "already a model's"),
        ({"e": ["unet", "other"]}, "not in `models`"),
        ({"e": ["unet", "unet"]}, "two or more different"),
    ):
        with pytest.raises(InputError, match=message):
            check_config(load({"models": models, "ensembles": ensembles}))


def test_translation_has_no_ensembles_or_postprocessing():
    base = {
        "task": "translation",
        "modalities": ["t1", "t2"],
        "translation": {"inputs": ["t1"], "target": "t2"},
        "models": {"a": {"loss": "mae"}, "b": {"loss": "mae"}},
    }
    config = load({**base, "split": {"cv_folds": 2}})
    check_config(config)
    assert ensemble_runs(config) == {}  # no fold ensemble of synthetic images
    with pytest.raises(InputError, match="ensembles average class probabilities"):
        check_config(load({**base, "ensembles": {"ab": ["a", "b"]}}))
    with pytest.raises(InputError, match="post-processing is for segmentation"):
        check_config(load({**base, "postprocessing": {"enabled": True}}))


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name != "config.yaml")
)
def test_shipped_example_configs_validate(example):
    """Every example config, over config/config.yaml as --configfile puts it (top-level keys
    replaced, nested mappings merged), passes the schema and the checks beyond it."""
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / example).read_text()))
    validate(config, schema=SCHEMA)
    check_config(config)


def test_region_outputs_need_nested_regions_and_segmentation():
    check_config(load({"models": {"unet": {"output": "regions"}}}))  # BraTS: WT > TC > ET
    crossed = {
        "label_convention": "custom",
        "labels": {"a": 1, "b": 2, "c": 3},
        "regions": {"ab": ["a", "b"], "bc": ["b", "c"], "c": ["c"]},
    }
    check_config(load(crossed))  # scored as given with a class model
    with pytest.raises(InputError, match="overlap without one holding the other"):
        check_config(load({**crossed, "models": {"unet": {"output": "regions"}}}))
    models = {"a": {"output": "regions"}, "b": {}}
    with pytest.raises(InputError, match="mixes class and region outputs"):
        check_config(load({"models": models, "ensembles": {"ab": ["a", "b"]}}))
