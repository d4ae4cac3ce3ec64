"""The QC picture and the training curves (tumorseg.report.figures): what they show."""

import numpy as np
import pandas as pd
from figure_checks import legend_entries, suptitle, titles, written, ylabels

from tumorseg.report.figures import message_figure, plot_curves, plot_qc
from tumorseg.tasks.labels import UNLABELLED


def _record(labelled=True, lost=(0, 0)):
    return {
        "case": "BraTS_007",
        "modalities": ["flair", "t1"],
        "label_names": ["background", "necrotic", "edema", "enhancing"],
        "native": {"size": [240, 240, 155]},
        "native_orientation": "LPS",
        "resampled": False,
        "has_label": labelled,
        "lost_brain_voxels": lost[0],
        "lost_tumour_voxels": lost[1],
    }


def test_qc_shows_every_modality_in_three_views_with_the_label_classes(tmp_path):
    image = np.random.default_rng(0).normal(size=(20, 24, 24, 2)).astype(np.float32)
    label = np.zeros((20, 24, 24), np.uint8)
    label[8:12, 10:14, 10:14] = 2
    label[9:11, 11:13, 11:13] = 3
    fig = plot_qc(image, label, _record(lost=(5, 1)), tmp_path / "qc.png")
    assert written(tmp_path / "qc.png")
    assert titles(fig) == ["flair", "t1"]
    assert ylabels(fig) == ["axial", "coronal", "sagittal"]
    text = suptitle(fig)
    assert text.startswith("BraTS_007  native 240x240x155 LPS")
    assert "outside crop: 5 brain, 1 tumour voxels" in text
    assert "edema=" in text and "enhancing=" in text
    assert "necrotic" not in text  # only the classes present are outlined
    # the view goes through the tumour: each axial panel's contours exist
    assert all(ax.collections for ax in fig.axes[:2])


def test_qc_of_an_unlabelled_case_says_so_and_outlines_nothing(tmp_path):
    image = np.zeros((6, 8, 8, 2), np.float32)
    label = np.full((6, 8, 8), UNLABELLED, np.uint8)
    fig = plot_qc(image, label, _record(labelled=False), tmp_path / "qc.png")
    assert "(no label)" in suptitle(fig)
    assert not any(ax.collections for ax in fig.axes)


def test_curves_show_losses_dice_and_the_best_epoch(tmp_path):
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [1.0, 0.8, 0.7],
            "val_loss": [1.1, 0.9, 0.95],
            "val_dice_wt": [0.2, 0.5, 0.4],
            "val_dice_et": [0.1, 0.3, 0.2],
            "val_dice_mean": [0.15, 0.4, 0.3],
        }
    )
    out = tmp_path / "curves.png"
    fig = plot_curves(history, out, "unet", best_epoch=2, metrics=("dice_wt", "dice_et"))
    assert written(out)
    assert suptitle(fig) == "unet"
    assert legend_entries(fig) == [
        "loss",
        "val_loss",
        "val_dice_wt",
        "val_dice_et",
        "val_dice_mean",
    ]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "Dice (validation)"]
    for ax in fig.axes:  # the best epoch marked in both panels
        assert any(list(line.get_xdata()) == [2, 2] for line in ax.get_lines())


def test_message_figure_says_why_nothing_is_drawn(tmp_path):
    fig = message_figure(tmp_path / "m.png", "no labelled case to show")
    assert written(tmp_path / "m.png")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no labelled case to show"]
