"""Label maps: presets, binary and custom maps, and the steps that follow them."""

import numpy as np
import pytest

from tumorseg.errors import InputError
from tumorseg.tasks import labels
from tumorseg.tasks.labels import LabelMap, spec_from_config
from tumorseg.workflow_config import check_config

ASEG = {  # FreeSurfer aseg values: non-contiguous, some above 255
    "Left-Cerebral-White-Matter": 2,
    "Left-Cerebral-Cortex": 3,
    "Left-Lateral-Ventricle": 4,
    "Left-Thalamus": 10,
    "Right-Cerebral-White-Matter": 41,
    "Right-Cerebral-Cortex": 42,
    "ctx-lh-bankssts": 1001,
}


def custom(labels_map, regions=None):
    return LabelMap.from_spec(
        spec_from_config(
            {"label_convention": "custom", "labels": labels_map, "regions": regions or {}}
        )
    )


@pytest.mark.parametrize(
    ("name", "values"),
    [("brats2017", (0, 1, 2, 4)), ("brats2023", (0, 1, 2, 3)), ("decathlon", (0, 2, 1, 3))],
)
def test_brats_presets_keep_the_internal_classes(name, values):
    m = LabelMap.from_spec(name)
    assert m.names == ("background", "necrotic", "edema", "enhancing")
    assert m.values == values
    assert m.regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    assert [m.metric_name(r) for r in m.regions] == ["dice_wt", "dice_tc", "dice_et"]
    stored = np.array(values, dtype=np.uint8)
    np.testing.assert_array_equal(m.to_internal(stored), [0, 1, 2, 3])
    np.testing.assert_array_equal(m.from_internal(np.arange(4)), stored)


def test_binary_map_takes_any_nonzero_value_as_the_lesion():
    m = LabelMap.from_spec("binary")
    assert m.n_classes == 2 and m.regions == {"lesion": (1,)}
    for mask in (np.array([0, 1, 1], np.uint8), np.array([0, 255, 255], np.uint8)):
        np.testing.assert_array_equal(m.to_internal(mask), [0, 1, 1])
    np.testing.assert_array_equal(m.to_internal(np.array([0.0, 7.0])), [0, 1])
    np.testing.assert_array_equal(m.from_internal(np.array([0, 1])), [0, 1])
    np.testing.assert_array_equal(m.from_internal(np.array([0, 1]), 255), [0, 255])


def test_custom_map_with_noncontiguous_values_round_trips():
    m = custom(ASEG)
    assert m.n_classes == len(ASEG) + 1
    assert m.regions == {name: (i,) for i, name in enumerate(ASEG, start=1)}
    stored = np.array([0, *ASEG.values()], dtype=np.int32)
    classes = m.to_internal(stored)
    np.testing.assert_array_equal(classes, np.arange(len(ASEG) + 1))
    assert m.write_dtype() == np.uint16  # 1001 needs 16 bits
    back = m.from_internal(classes)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, stored)


def test_custom_regions_unite_labels():
    m = custom(ASEG, {"white": ["Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter"]})
    assert m.regions == {"white": (1, 5)}
    assert m.metric_name("Left-Cerebral-Cortex") == "dice_left_cerebral_cortex"


def test_value_outside_the_map_names_case_file_and_values():
    m = custom(ASEG)
    with pytest.raises(InputError) as err:
        m.to_internal(np.array([0, 2, 5, 77], np.uint8), "c1", "/data/c1_seg.mnc")
    msg = str(err.value)
    assert "case c1" in msg and "/data/c1_seg.mnc" in msg and "[5, 77]" in msg


def test_more_than_twenty_classes_downsample_and_resample():
    from tumorseg.preprocessing import geometry as geo

    values = {f"l{i}": v for i, v in enumerate(range(2, 90, 4))}  # 22 labels
    m = custom(values)
    assert m.n_classes == 23
    classes = np.repeat(np.arange(23, dtype=np.uint8), 8).reshape(23, 2, 4)
    classes = np.repeat(classes, 2, axis=0)  # (46, 2, 4): blocks of one class each
    down = geo.downsample_labels(classes, (2, 2, 2), m.n_classes, m.priority())
    np.testing.assert_array_equal(down[:, 0, 0], np.arange(23))
    grid = geo.Grid((4, 2, 46), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(geo.resample_labels(classes, grid, grid, 23), classes)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"label_convention": "custom"}, "needs `labels"),
        ({"label_convention": "custom", "labels": {"a": 1, "b": 1}}, "several names"),
        (
            {"label_convention": "custom", "labels": {"a": 1}, "regions": {"r": ["zz"]}},
            "region 'r' names labels ['zz']",
        ),
        ({"labels": {"a": 1}}, "only read with label_convention custom"),
    ],
)
def test_config_checks_the_label_map(extra, message):
    import yaml
    from conftest import ROOT
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = {"models": {"unet": {}}, **extra}
    Draft202012Validator(schema).validate(config)
    filled = _with_defaults(config, schema)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_config(filled)


def _with_defaults(config, schema):
    out = dict(config)
    for key, prop in schema["properties"].items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
    for key in ("preprocess", "split"):
        out[key] = _fill(out[key], schema["properties"][key])
    return out


def _fill(node, schema):
    node = dict(node)
    for key, prop in schema.get("properties", {}).items():
        if key not in node and "default" in prop:
            node[key] = prop["default"]
        if prop.get("type") == "object" and "properties" in prop:
            node[key] = _fill(node.get(key, {}), prop)
    return node


def test_colours_one_per_class():
    assert labels.class_colours("brats2017")[1:] == ["#e41a1c", "#4daf4a", "#ffd92f"]
    colours = labels.class_colours(custom({f"l{i}": i + 1 for i in range(25)}))
    assert len(colours) == 26
