"""The built-in synthetic demo dataset (tumorseg.demo.phantom)."""

import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from tumorseg.demo import phantom as demo
from tumorseg.errors import InputError
from tumorseg.io.layouts import BRATS_MODALITIES
from tumorseg.io.sheet import complete_sheet, scanner_from_case

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261122
DEFAULTS = {"n_scanners": 3, "n_subjects": 19, "n_second_sessions": 6, "n_unlabelled": 1}
REGEX = "^(?:TCGA-)?([A-Za-z0-9]+)[-_]"


def _read(path):
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


def _on_brats_grid(img: sitk.Image, nearest: bool = True) -> np.ndarray:
    """An image resampled onto the BraTS grid (physical positions kept)."""
    ref = sitk.Image(240, 240, 155, img.GetPixelID())
    ref.SetOrigin((0.0, -239.0, 0.0))
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), interp, 0))


def _row(table, case):
    return table.set_index("case").loc[case]


def _write(table, case, outdir, seed=SEED, **kw):
    r = _row(table, case)
    return demo.write_case(
        case, r.subject, r.scanner, int(r.session), bool(r.labelled), str(outdir), seed, **kw
    )


@pytest.fixture(scope="module")
def table():
    return demo.case_table(**DEFAULTS)


@pytest.fixture(scope="module")
def cases(table, tmp_path_factory):
    """A few generated cases: an enhancing and a non-enhancing siteA subject (ses1 and ses2
    of the first), one siteB and one siteC case."""
    out = tmp_path_factory.mktemp("demo")
    labelled = table[table["labelled"]]
    enh = {s: demo.subject_params(SEED, s).enhancing for s in labelled["subject"].unique()}
    first = labelled.iloc[0]
    assert first["case"] == "siteA_sub001_ses1"
    et_subject = next(s for s, e in enh.items() if e)
    no_et_subject = next(s for s, e in enh.items() if not e)
    pick = {
        "et": labelled[(labelled.subject == et_subject) & (labelled.session == 1)].case.iloc[0],
        "no_et": labelled[(labelled.subject == no_et_subject) & (labelled.session == 1)].case.iloc[
            0
        ],
        "ses1": "siteA_sub001_ses1",
        "ses2": "siteA_sub001_ses2",
        "siteB": labelled[labelled.scanner == "siteB"].case.iloc[0],
        "siteC": labelled[labelled.scanner == "siteC"].case.iloc[0],
    }
    written = {case: {"case": case, **_write(table, case, out)} for case in set(pick.values())}
    paths = {key: written[case] for key, case in pick.items()}
    return paths


# --------------------------------------------------------------------------- case table


def test_case_table_defaults(table):
    assert list(table.columns) == ["case", "subject", "scanner", "session", "labelled"]
    assert len(table) == 25
    assert table["case"].is_unique and list(table["case"]) == sorted(table["case"])
    assert table["subject"].nunique() == 19
    assert sorted(table["scanner"].unique()) == ["siteA", "siteB", "siteC"]
    sessions = table.groupby("subject")["session"].apply(sorted)
    assert (sessions.map(len) == 2).sum() == 6
    assert all(s in ([1], [1, 2]) for s in sessions)
    assert sorted(table.loc[table.session == 2, "subject"]) == [f"sub{i:03d}" for i in range(1, 7)]
    assert table["session"].dtype == np.int64 and table["labelled"].dtype == bool
    unlabelled = table.loc[~table["labelled"]]
    assert list(unlabelled["subject"]) == ["sub019"]
    # round robin, and the scanner can be recovered from the case ID
    assert _row(table, "siteA_sub001_ses1").scanner == "siteA"
    assert _row(table, "siteB_sub002_ses1").scanner == "siteB"
    assert _row(table, "siteC_sub003_ses2").scanner == "siteC"
    assert _row(table, "siteA_sub004_ses1").scanner == "siteA"
    for case, scanner, subject in zip(table.case, table.scanner, table.subject, strict=True):
        assert scanner_from_case(case, REGEX) == scanner
        assert subject in case
    assert table.groupby("scanner")["subject"].nunique().to_dict() == {
        "siteA": 7,
        "siteB": 6,
        "siteC": 6,
    }


def test_case_table_other_sizes():
    t = demo.case_table(6, 4, 4, 0)
    assert len(t) == 8 and t["labelled"].all()
    assert sorted(t["scanner"].unique()) == ["siteA", "siteB", "siteC", "siteD"]
    t = demo.case_table(1, 2, 0, 2)
    assert list(t["case"]) == ["siteA_sub001_ses1", "siteA_sub002_ses1"]
    assert not t["labelled"].any()


@pytest.mark.parametrize(
    "args, match",
    [
        ((3, 5, 0, 6), "n_unlabelled is 6"),
        ((3, 5, 6, 0), "n_second_sessions is 6"),
        ((0, 5, 0, 0), "n_scanners is 0"),
        ((7, 5, 0, 0), "n_scanners is 7"),
        ((3, 0, 0, 0), "n_subjects is 0"),
        ((3, 5, -1, 0), "n_second_sessions is -1"),
        ((3, 2.5, 0, 0), "n_subjects must be an integer"),
    ],
)
def test_case_table_rejects_bad_values(args, match):
    with pytest.raises(InputError, match=match):
        demo.case_table(*args)


# --------------------------------------------------------------------------- grids


def _centre(grid):
    d = np.reshape(grid["direction"], (3, 3))
    half = (np.asarray(grid["size"]) - 1) / 2 * np.asarray(grid["spacing"])
    return np.asarray(grid["origin"]) + d @ half


def test_scanner_grids():
    a = demo.scanner_grid("siteA")
    assert a["size"] == (240, 240, 155) and a["spacing"] == (1.0, 1.0, 1.0)
    assert a["origin"] == (0.0, -239.0, 0.0)
    assert np.allclose(np.reshape(a["direction"], (3, 3)), np.eye(3))
    assert demo.scanner_grid("siteB") == a
    c = demo.scanner_grid("siteC")
    assert c["size"] == (200, 200, 130) and c["spacing"] == (1.2, 1.2, 1.2)
    assert np.allclose(np.reshape(c["direction"], (3, 3)), np.diag([-1, -1, 1]))
    # same head position: both grids share their physical centre
    assert np.allclose(_centre(a), _centre(c), atol=1e-6)
    assert np.allclose(_centre(a), (119.5, -119.5, 77.0))


# --------------------------------------------------------------------------- files


def test_files_and_geometry_site_a(cases):
    p = cases["ses1"]
    assert sorted(k for k in p if k != "case") == ["flair", "seg", "t1", "t1ce", "t2"]
    for key in ("flair", "t1", "t1ce", "t2", "seg"):
        assert p[key].endswith(f"siteA_sub001_ses1/siteA_sub001_ses1_{key}.nii.gz")
        img, arr = _read(p[key])
        assert img.GetSize() == (240, 240, 155)
        assert img.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
        assert img.GetOrigin() == pytest.approx((0.0, -239.0, 0.0))
        assert np.allclose(np.reshape(img.GetDirection(), (3, 3)), np.eye(3))
        assert arr.dtype == (np.uint8 if key == "seg" else np.int16)


def test_files_and_geometry_site_c(cases):
    p = cases["siteC"]
    grid = demo.scanner_grid("siteC")
    for key in ("flair", "t1", "t1ce", "t2", "seg"):
        img, arr = _read(p[key])
        assert img.GetSize() == (200, 200, 130)
        assert img.GetSpacing() == pytest.approx((1.2, 1.2, 1.2))
        assert np.allclose(np.reshape(img.GetDirection(), (3, 3)), np.diag([-1, -1, 1]))
        assert img.GetOrigin() == pytest.approx(grid["origin"], abs=1e-4)
        assert arr.dtype == (np.uint8 if key == "seg" else np.int16)
    _, seg = _read(p["seg"])
    assert set(np.unique(seg)) <= {0, 1, 2, 4} and (seg > 0).sum() > 1000
    # the brain lies inside siteC's field of view (its border planes are empty)
    _, t2 = _read(p["t2"])
    for ax in range(3):
        assert not np.take(t2, [0, -1], axis=ax).any()


def test_unlabelled_case_has_no_seg(table, tmp_path):
    case = table.loc[~table["labelled"], "case"].iloc[0]
    paths = _write(table, case, tmp_path, modalities=("t1", "flair"))
    assert sorted(paths) == ["flair", "t1"]
    assert sorted(f.name for f in (tmp_path / case).iterdir()) == [
        f"{case}_flair.nii.gz",
        f"{case}_t1.nii.gz",
    ]


def test_deterministic_bytes(table, cases, tmp_path):
    # a modality's file does not depend on which other modalities are asked for, or in
    # which order (all four in the default order: test_sheet_and_case_scripts)
    again = _write(table, "siteA_sub001_ses1", tmp_path / "again", modalities=("t2", "t1"))
    assert sorted(again) == ["seg", "t1", "t2"]
    for key in ("t1", "t2", "seg"):
        assert Path(again[key]).read_bytes() == Path(cases["ses1"][key]).read_bytes(), key
    other = _write(table, "siteA_sub001_ses1", tmp_path / "other", seed=SEED + 1)
    for key in ("flair", "t1", "t1ce", "t2", "seg"):
        assert Path(other[key]).read_bytes() != Path(cases["ses1"][key]).read_bytes(), key


def test_labels_with_and_without_enhancing(cases):
    _, seg = _read(cases["et"]["seg"])
    values, counts = np.unique(seg, return_counts=True)
    assert list(values) == [0, 1, 2, 4]
    assert counts[1:].min() > 200  # each class is a real region, not a few voxels
    _, seg = _read(cases["no_et"]["seg"])
    assert list(np.unique(seg)) == [0, 1, 2]


def test_tissue_contrasts(cases):
    arr = {k: _read(cases["et"][k])[1].astype(float) for k in ("flair", "t1", "t1ce", "t2", "seg")}
    seg = arr["seg"]
    brain = arr["t1"] > 0
    normal = brain & (seg == 0)
    mean = {
        (m, name): arr[m][region].mean()
        for m in ("flair", "t1", "t1ce", "t2")
        for name, region in (("normal", normal), ("edema", seg == 2), ("nec", seg == 1))
    }
    for m in ("flair", "t1", "t1ce", "t2"):
        mean[(m, "et")] = arr[m][seg == 4].mean()
    assert mean[("flair", "edema")] > 1.5 * mean[("flair", "normal")]
    assert mean[("t2", "edema")] > 1.2 * mean[("t2", "normal")]
    assert mean[("t1ce", "et")] > 3 * mean[("t1ce", "nec")]
    assert mean[("t1ce", "et")] > 1.5 * mean[("t1", "et")] * np.median(
        arr["t1ce"][normal] / np.maximum(arr["t1"][normal], 1)
    )
    # T1 (WM > GM > CSF) and T2 (CSF > GM > WM) contrasts run opposite in normal brain
    r = np.corrcoef(arr["t1"][normal], arr["t2"][normal])[0, 1]
    assert r < -0.5
    # CSF: the brightest T2 voxels of the normal brain are dark on FLAIR and T1
    bright_t2 = normal & (arr["t2"] > np.percentile(arr["t2"][normal], 99))
    assert arr["flair"][bright_t2].mean() < 0.5 * arr["flair"][normal].mean()
    assert arr["t1"][bright_t2].mean() < 0.6 * arr["t1"][normal].mean()


def test_background_and_crop(cases):
    for key in ("et", "no_et", "siteB", "siteC"):
        p = cases[key]
        for m in ("flair", "t1", "t1ce", "t2", "seg"):
            img, arr = _read(p[m])
            if key == "siteC":
                arr = _on_brats_grid(img)
            nonzero = arr != 0
            assert nonzero.sum() > 500_000 if m != "seg" else nonzero.any()
            # inside the central 192x192 in-plane crop of the BraTS grid (x, y in 24..215)
            outside = nonzero.copy()
            outside[:, 24:216, 24:216] = False
            assert not outside.any(), (key, m)
            if m != "seg":
                # skull-stripped: exactly 0 away from the brain; a few small negatives at
                # its edge at most
                assert (arr < 0).sum() < 0.005 * nonzero.sum()
                assert arr.min() > -0.2 * np.percentile(arr[nonzero], 50)
        _, seg = _read(p["seg"])
        _, flair = _read(p["flair"])
        assert not (seg > 0)[flair == 0].any()  # the tumour lies inside the brain


def test_sessions_share_anatomy(cases):
    s1 = _read(cases["ses1"]["seg"])[1] > 0
    s2 = _read(cases["ses2"]["seg"])[1] > 0
    b1 = _read(cases["ses1"]["t1"])[1] != 0
    b2 = _read(cases["ses2"]["t1"])[1] != 0
    # same brain (moved by at most 2 mm per axis), same tumour with a changed size
    c1, c2 = (np.argwhere(m).mean(axis=0) for m in (b1, b2))
    assert np.all(np.abs(c1 - c2) < 2.5)
    assert 0.95 < b2.sum() / b1.sum() < 1.05
    ratio = s2.sum() / s1.sum()
    assert 0.85**3 * 0.9 < ratio < 1.15**3 * 1.1 and ratio != 1.0
    t1, t2 = (np.argwhere(m).mean(axis=0) for m in (s1, s2))
    assert np.all(np.abs(t1 - t2) < 6)
    # a different subject has another tumour
    other = _read(cases["siteB"]["seg"])[1] > 0
    assert (s1 & other).sum() < 0.8 * min(s1.sum(), other.sum())


def test_scanner_intensity_scale(cases, table):
    """The brain's median intensity follows the scanner's scale (anatomy varies < 15 %)."""
    ratios = []
    for key in ("et", "siteB", "siteC"):
        p = cases[key]
        scanner = _row(table, p["case"]).scanner
        sc = demo.scanner_params(SEED, scanner)
        seg = _read(p["seg"])[1]
        t1 = _read(p["t1"])[1].astype(float)
        normal = (t1 > 0) & (seg == 0)
        ratios.append(np.median(t1[normal]) / sc.scale["t1"])
    assert max(ratios) / min(ratios) < 1.3
    scales = [demo.scanner_params(SEED, s).scale["t1"] for s in ("siteA", "siteB", "siteC")]
    assert max(scales) / min(scales) > 1.1 and all(0.5 < s < 2.1 for s in scales)


def test_write_case_rejects_unknown_modality(tmp_path):
    with pytest.raises(InputError, match="cannot generate modalities \\['t1gd'\\]"):
        demo.write_case("siteA_sub001_ses1", "sub001", "siteA", 1, True, tmp_path, 1, ("t1gd",))
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- sheet


def test_the_workflow_sheet_points_at_the_files_write_case_writes(table, tmp_path):
    from tumorseg.workflow_config import demo_sheet

    outdir = tmp_path / "demo"
    config = {"demo": DEFAULTS, "modalities": list(BRATS_MODALITIES)}
    df = demo_sheet(config)
    assert list(df.columns) == ["case", "subject", "scanner", "flair", "t1", "t1ce", "t2", "seg"]
    assert list(df["case"]) == list(table["case"])
    assert (df.loc[df.case.str.contains("sub019"), "seg"] == "").all()
    done = complete_sheet(df, outdir, list(BRATS_MODALITIES), REGEX, check_files=False)
    assert done["labelled"].sum() == 24
    for rec in table.itertuples(index=False):
        paths = demo.case_paths(rec.case, outdir, bool(rec.labelled))
        for key in [*BRATS_MODALITIES, "seg"]:
            assert done.loc[rec.case, key] == (
                str(Path(paths[key]).resolve()) if key in paths else ""
            )


@pytest.fixture
def root_logging():
    """Put back the root logger's handlers that run_step replaces."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in saved:
            handler.close()
    root.handlers[:] = saved
    root.setLevel(level)


def test_case_script(cases, tmp_path, root_logging):
    """The step script, run as Snakemake would (a `snakemake` object in its globals)."""
    scripts = ROOT / "workflow" / "scripts"
    outdir = tmp_path / "demo"
    smk = SimpleNamespace(
        scriptdir=str(scripts),
        log=[str(tmp_path / "case.log")],
        wildcards=SimpleNamespace(case="siteA_sub001_ses1"),
        params=SimpleNamespace(
            subject="sub001",
            scanner="siteA",
            session=1,
            labelled=True,
            outdir=str(outdir),
            seed=SEED,
            modalities=["flair", "t1", "t1ce", "t2"],
        ),
    )
    runpy.run_path(str(scripts / "demo_case.py"), init_globals={"snakemake": smk})
    for key in ("flair", "t1", "t1ce", "t2", "seg"):
        written = outdir / "siteA_sub001_ses1" / f"siteA_sub001_ses1_{key}.nii.gz"
        assert written.read_bytes() == Path(cases["ses1"][key]).read_bytes()

    smk.params.modalities = ["t1gd"]
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(scripts / "demo_case.py"), init_globals={"snakemake": smk})
    assert exc.value.code == 1
    assert "cannot generate modalities ['t1gd']" in (tmp_path / "case.log").read_text()
