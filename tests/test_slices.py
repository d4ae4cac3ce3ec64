"""Slice stacks (the LGG layout): numeric order, channels, crop/pad and the way back."""

import numpy as np
import pytest
import SimpleITK as sitk
from synth import preprocess

from tumorseg.errors import InputError
from tumorseg.inference.export import write_segmentation
from tumorseg.io import slices
from tumorseg.preprocessing import geometry as geo

STEM = "TCGA_CS_4941_19960909"


def write_stack(folder, n=12, height=50, width=40, masks=True):
    """RGB slices whose red channel encodes k, a disc lesion on every other slice."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:height, :width]
    brain = ((yy - height / 2) / (height * 0.45)) ** 2 + ((xx - width / 2) / (width * 0.45)) ** 2
    expected = []
    for k in range(1, n + 1):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[..., 0] = np.where(brain < 1, 10 + k, 0)
        rgb[..., 1] = np.where(brain < 1, 100 + (xx % 7) * 5, 0)
        rgb[..., 2] = np.where(brain < 1, 60 + (yy % 5) * 9, 0)
        lesion = ((yy - 20) ** 2 + (xx - 18) ** 2 < 36) & (k % 2 == 0)
        rgb[lesion, 1] = 250
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(folder / f"{STEM}_{k}.tif"))
        if masks:
            mask = (lesion * 255).astype(np.uint8)
            sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / f"{STEM}_{k}_mask.tif"))
        expected.append(lesion)
    return np.stack(expected)


def test_slices_stack_in_numeric_order(tmp_path):
    write_stack(tmp_path / STEM)
    stack = slices.find_stack(tmp_path / STEM)
    assert stack.numbers == tuple(range(1, 13))  # _10 after _9, not after _1
    t1, flair = slices.read_stack_images(
        tmp_path / STEM, "c", ["t1", "flair"], ["t1", "flair", "t1ce"]
    )
    red = sitk.GetArrayFromImage(t1)
    assert red.shape == (12, 50, 40)
    assert [int(red[z].max()) for z in range(12)] == [10 + k for k in range(1, 13)]
    assert sitk.GetArrayFromImage(flair).max() == 250
    grid = geo.Grid.from_image(t1)
    assert grid.spacing == (1.0, 1.0, 1.0) and grid.origin == (0.0, 0.0, 0.0)
    assert slices.grid_of_stack(tmp_path / STEM) == grid


def test_stack_errors_name_the_file(tmp_path):
    write_stack(tmp_path / STEM, n=3)
    (tmp_path / STEM / f"{STEM}_2_mask.tif").unlink()
    with pytest.raises(InputError, match=r"slices \[2\] have an image or a mask"):
        slices.find_stack(tmp_path / STEM, "c")
    (tmp_path / STEM / "notes_a.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="notes_a.tif"):
        slices.find_stack(tmp_path / STEM, "c")
    with pytest.raises(InputError, match="slice folder not found"):
        slices.find_stack(tmp_path / "none", "c")
    write_stack(tmp_path / "two" / STEM, n=2)
    with pytest.raises(InputError, match=r"3 channel\(s\), config `image_channels` names 2"):
        slices.read_stack_images(tmp_path / "two" / STEM, "c", ["t1"], ["t1", "flair"])


@pytest.mark.parametrize("size", [(48, 48), (32, 40), (40, 50)])
def test_crop_or_pad_and_back_is_exact(tmp_path, size):
    """Slices padded or cropped to the configured size and sent back (no downsampling)
    give the input masks exactly; the prediction folder has one mask per input slice."""
    lesion = write_stack(tmp_path / STEM)
    paths = {"image": str(tmp_path / STEM), "seg": str(tmp_path / STEM)}
    rec, out = preprocess(
        STEM,
        paths,
        tmp_path / "pre",
        convention="binary",
        modalities=["t1", "flair", "t1ce"],
        image_channels=["t1", "flair", "t1ce"],
        stack={"size": list(size), "downsample": [1, 1]},
    )
    image = np.load(out["image.npy"], allow_pickle=False)
    assert image.shape == (12, size[1], size[0], 3)
    assert rec["stack"] and rec["resampled"] == (size != (40, 50))
    label = np.load(out["label.npy"], allow_pickle=False)
    classes = geo.labels_to_native(label, rec, 2)
    lost = lesion & ~(sitk.GetArrayFromImage(classes) == 1)
    inside = np.zeros_like(lesion)
    (dy, dx) = ((50 - size[1]) // 2, (40 - size[0]) // 2)
    inside[
        :, max(dy, 0) : max(dy, 0) + min(50, size[1]), max(dx, 0) : max(dx, 0) + min(40, size[0])
    ] = True
    assert not (lost & inside).any()  # exact wherever the slice survives the crop
    write_segmentation(classes, str(tmp_path / STEM), STEM, "binary", tmp_path / "pred")
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == sorted(f"{STEM}_{k}_mask.tif" for k in range(1, 13))
    back = sitk.GetArrayFromImage(slices.read_stack_masks(tmp_path / "pred", STEM))
    assert back.shape == (12, 50, 40) and set(np.unique(back)) <= {0, 255}
    np.testing.assert_array_equal(back == 255, (sitk.GetArrayFromImage(classes) == 1))
    if size == (48, 48):  # padding only: nothing is lost
        np.testing.assert_array_equal(back == 255, lesion)


def test_downsampled_stack_keeps_every_slice(tmp_path):
    write_stack(tmp_path / STEM, n=7)
    paths = {"image": str(tmp_path / STEM), "seg": str(tmp_path / STEM)}
    rec, out = preprocess(
        STEM,
        paths,
        tmp_path / "pre",
        convention="binary",
        modalities=["flair", "t1"],
        image_channels=["t1", "flair", "t1ce"],
        stack={"size": [48, 48], "downsample": [2, 2]},
    )
    assert np.load(out["image.npy"]).shape == (7, 24, 24, 2)
    assert rec["downsample"] == [2, 2, 1]
    back = geo.labels_to_native(np.load(out["label.npy"]), rec, 2)
    assert geo.Grid.from_image(back) == slices.grid_of_stack(tmp_path / STEM)


def test_a_truncated_slice_is_a_one_line_error_naming_the_case_and_the_file(tmp_path):
    write_stack(tmp_path / STEM, n=4)
    broken = tmp_path / STEM / f"{STEM}_3.tif"
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(InputError) as err:
        slices.read_stack_images(tmp_path / STEM, "c7", ["t1"], ["t1", "flair", "t1ce"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"case c7: {broken}: cannot read the slice image")
    mask = tmp_path / STEM / f"{STEM}_2_mask.tif"
    mask.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="case c7: .*_2_mask.tif: cannot read the mask slice"):
        slices.read_stack_masks(tmp_path / STEM, "c7")
