"""Bad input through the workflow: sheet problems stop it before any job runs; a bad
image fails its own case only (with --keep-going), naming the case and the file."""

import pandas as pd
import pytest
import yaml
from synth import MODS, write_case
from workflow_helpers import make_workdir, run_snakemake

pytestmark = pytest.mark.slow

SMALL = {
    "size": (80, 90, 60),
    "spacing": (2.5, 2.5, 2.5),
    "origin": (-100.0, -110.0, -75.0),
    "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("errors") / "wf")
    rows = []
    for case in ("good01", "bad01"):
        paths = write_case(wd / "data", case, SMALL)
        rows.append({"case": case, **{m: paths[m] for m in MODS}, "seg": paths["seg"]})
    pd.DataFrame(rows).to_csv(wd / "data/samples.tsv", sep="\t", index=False)
    (wd / "errors.yaml").write_text(
        yaml.safe_dump({"demo": {"enabled": False}, "samples": "data/samples.tsv"})
    )
    return wd


def test_sheet_problems_stop_before_any_job(workdir):
    sheet = pd.read_csv(workdir / "data/samples.tsv", sep="\t")
    sheet.loc[1, "t2"] = "data/bad01/missing_t2.nii.gz"
    sheet.loc[2] = sheet.loc[0]  # duplicate case ID
    sheet.to_csv(workdir / "data/broken.tsv", sep="\t", index=False)
    (workdir / "broken.yaml").write_text(
        yaml.safe_dump({"demo": {"enabled": False}, "samples": "data/broken.tsv"})
    )
    proc = run_snakemake(workdir, "--configfile", "broken.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "duplicate case IDs: good01" in out
    assert "case bad01" in out and "missing_t2.nii.gz: t2 file not found" in out
    assert not (workdir / "results").exists(), "no job may run"


def test_bad_image_fails_only_its_case(workdir):
    bad = workdir / "data/bad01/bad01_t1ce.nii.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated gzip
    targets = [
        f"results/preprocessed/{c}/{n}"
        for c in ("good01", "bad01")
        for n in ("image.npy", "geometry.json")
    ]
    proc = run_snakemake(
        workdir, "--configfile", "errors.yaml", "--keep-going", *targets, check=False
    )
    assert proc.returncode != 0
    good = workdir / "results/preprocessed/good01"
    assert (good / "image.npy").is_file() and (good / "geometry.json").is_file()
    bad_dir = workdir / "results/preprocessed/bad01"
    assert not bad_dir.exists() or not any(bad_dir.iterdir()), "half-written output left"
    log = (workdir / "logs/preprocess/bad01.log").read_text()
    assert "case bad01" in log and str(bad.name) in log and "gzip" in log
    assert "Traceback" not in log
