"""MINC is HDF5, and ITK's HDF5 is not thread-safe: every SimpleITK call that may reach
HDF5 goes through one process-wide lock; other formats are read in parallel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tumorseg.io import formats as hdf5
from tumorseg.io import images as imageio
from tumorseg.io.grid import Grid

SRC = Path(__file__).resolve().parents[1] / "src"
MODS = ["t1", "t1ce", "t2", "flair"]
SHAPE_ZYX = (40, 96, 96)


def _write(path: Path, arr: np.ndarray) -> str:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 3.0))
    img.SetOrigin((-96.0, -96.0, -60.0))
    sitk.WriteImage(img, str(path))
    return str(path)


def _case(folder: Path, suffix_of) -> dict[str, str]:
    """Four int16 modalities and a uint8 label; ``suffix_of(role)`` picks each format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {
        m: _write(folder / f"c01_{m}{suffix_of(m)}", rng.integers(0, 900, SHAPE_ZYX, np.int16))
        for m in MODS
    }
    paths["seg"] = _write(
        folder / f"c01_seg{suffix_of('seg')}", rng.integers(0, 4, SHAPE_ZYX, np.uint8)
    )
    return paths


@pytest.fixture(scope="module")
def minc_case(tmp_path_factory):
    return _case(tmp_path_factory.mktemp("minc"), lambda role: ".mnc")


@pytest.fixture(scope="module")
def nifti_case(tmp_path_factory):
    return _case(tmp_path_factory.mktemp("nifti"), lambda role: ".nii.gz")


@pytest.fixture(scope="module")
def mixed_case(tmp_path_factory):
    """MINC and NIfTI in one case: ITK guessing a NIfTI's reader would probe HDF5."""
    return _case(
        tmp_path_factory.mktemp("mixed"), lambda r: ".mnc" if r in ("t1", "t2") else ".nii.gz"
    )


STRESS = """
import sys
sys.path.insert(0, sys.argv[1])
import faulthandler
faulthandler.enable()
from tumorseg.io.images import read_case_images
import json
import threading
cases = json.loads(sys.argv[2])
mods = ["t1", "t1ce", "t2", "flair"]
done = []
def rounds(paths):
    for _ in range(int(sys.argv[3])):
        imgs = read_case_images("c01", paths, None, mods, mods)
        assert [im.GetSize() for im in imgs] == [(96, 96, 40)] * 4
    done.append(1)
threads = [threading.Thread(target=rounds, args=(paths,)) for paths in cases]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok" if len(done) == len(cases) else "a thread failed")
"""


def test_minc_cases_read_on_two_threads_do_not_crash(minc_case, mixed_case):
    # one thread per case (a case's own files are read one at a time): MINC against MINC,
    # and NIfTI (named reader) against MINC, never NIfTI against NIfTI. Without the lock
    # this crashes (SIGSEGV, "Can not get real value hyperslab", "HDF5: infinite loop
    # closing library") within a few rounds; in a subprocess, so a crash fails this test
    # instead of killing pytest
    import json

    cases = json.dumps([minc_case, mixed_case])
    proc = subprocess.run(
        [sys.executable, "-c", STRESS, str(SRC), cases, "40"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


class CallRecorder:
    """Wraps a SimpleITK entry point: records each call's interval and whether the HDF5
    lock was held."""

    def __init__(self, func):
        self.func = func
        self.calls: list[tuple[str, float, float, bool]] = []
        self._mutex = threading.Lock()

    def __call__(self, *args, **kwargs):
        path = str(args[0]) if args and isinstance(args[0], str | Path) else ""
        held = _held_by_someone()
        start = time.monotonic()
        time.sleep(0.02)
        out = self.func(*args, **kwargs)
        with self._mutex:
            self.calls.append((path, start, time.monotonic(), held))
        return out

    def overlapping(self, pred) -> list[tuple[str, str]]:
        chosen = [c for c in self.calls if pred(c[0])]
        return [
            (a[0], b[0])
            for i, a in enumerate(chosen)
            for b in chosen[i + 1 :]
            if a[1] < b[2] and b[1] < a[2]
        ]


def _held_by_someone() -> bool:
    """Whether some thread holds :data:`hdf5.LOCK` (asked from a fresh thread)."""
    got: list[bool] = []

    def probe():
        ok = hdf5.LOCK.acquire(blocking=False)
        got.append(ok)
        if ok:
            hdf5.LOCK.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return not got[0]


def test_minc_reads_never_overlap_and_hold_the_lock(monkeypatch, minc_case, mixed_case):
    rec = CallRecorder(sitk.ReadImage)
    monkeypatch.setattr(sitk, "ReadImage", rec)
    for paths in (minc_case, mixed_case):
        imageio.read_case_images("c01", paths, None, MODS, MODS)
    minc = [c for c in rec.calls if c[0].endswith(".mnc")]
    assert len(minc) == 4 + 2
    assert all(held for *_, held in minc)
    assert rec.overlapping(hdf5.needs_lock) == []


def test_a_case_is_read_one_file_at_a_time(monkeypatch, tmp_path, nifti_case, mixed_case):
    """SimpleITK's readers are not safe to run at once, NIfTI's included (SimpleITK #74):
    the preprocessing of a case, given threads, still reads its files one at a time."""
    from synth import preprocess

    rec = CallRecorder(sitk.ReadImage)
    monkeypatch.setattr(sitk, "ReadImage", rec)
    for name, paths in (("nifti", nifti_case), ("mixed", mixed_case)):
        preprocess("c01", paths, tmp_path / name, seg=None, threads=4)
    assert len(rec.calls) == 8
    assert not any(held for path, *_, held in rec.calls if not hdf5.needs_lock(path))
    assert rec.overlapping(lambda p: True) == []


def test_header_read_of_minc_holds_the_lock(monkeypatch, minc_case, nifti_case):
    held = []
    original = sitk.ImageFileReader.ReadImageInformation

    def spy(self):
        held.append(_held_by_someone())
        return original(self)

    monkeypatch.setattr(sitk.ImageFileReader, "ReadImageInformation", spy)
    grid = Grid.from_file(minc_case["t1"])
    assert grid.size == (96, 96, 40) and grid.spacing == (2.0, 2.0, 3.0)
    Grid.from_file(nifti_case["t1"])
    assert held == [True, False]


def test_minc_voxels_and_reading_line(minc_case, caplog):
    caplog.set_level("INFO", logger="tumorseg")
    img = imageio.read_image(minc_case["seg"], "c01", "seg")
    rng = np.random.default_rng(0)
    for _ in MODS:
        rng.integers(0, 900, SHAPE_ZYX, np.int16)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(img), rng.integers(0, 4, SHAPE_ZYX, np.uint8)
    )
    assert f"case c01: reading seg {minc_case['seg']}" in caplog.text


@pytest.mark.parametrize(
    ("name", "reader", "locked_read", "locked_write"),
    [
        ("a.mnc", "", True, True),
        ("a.MNC2", "", True, True),
        ("a.h5", "", True, True),
        ("a.hdf5", "", True, True),
        ("a.hdf", "", True, True),
        ("a.nii.gz", "NiftiImageIO", False, False),
        ("a.nii", "NiftiImageIO", False, False),
        ("a.mha", "MetaImageIO", False, False),
        ("a.nrrd", "NrrdImageIO", False, False),
        ("a_3.tif", "TIFFImageIO", False, False),  # a slice of a slice stack
        ("a_3.png", "PNGImageIO", False, False),
        ("a.dcm", "", True, False),  # ITK must guess the reader: it probes HDF5
    ],
)
def test_which_paths_take_the_lock(name, reader, locked_read, locked_write):
    assert hdf5.image_io(Path("/d") / name) == reader
    with hdf5.hdf5_lock(name):
        assert _held_by_someone() is locked_read
    with hdf5.hdf5_lock(name, write=True):
        assert _held_by_someone() is locked_write
    assert imageio.hdf5_lock is hdf5.hdf5_lock  # one lock: the readers take it from formats


def test_write_image_of_minc_holds_the_lock(monkeypatch, tmp_path):
    held = []
    original = sitk.WriteImage

    def spy(*args, **kwargs):
        held.append(_held_by_someone())
        return original(*args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", spy)
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    imageio.write_image(img, tmp_path / "out.mnc")
    imageio.write_image(img, tmp_path / "out.nii.gz")
    assert held == [True, False]
    back = imageio.read_image(tmp_path / "out.mnc", "c01", "t1")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
