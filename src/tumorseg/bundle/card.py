"""The bundle step: ``bundle.json`` and the model card ``card.md`` beside a trained model.

The card says what the model was trained on and how well it did: the config's digest, the
data's digests (the completed sheet, and the preprocessed arrays of its training and
validation cases), the package versions, the workflow's commit, the cases per split and
scanner, the validation (and test) metrics per region, and the training's time, precision
and hardware (the training job's ``training.json``).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from tumorseg.bundle.manifest import file_sha256
from tumorseg.io.atomic import atomic_path
from tumorseg.io.tables import read_json, read_splits, read_tsv, write_json
from tumorseg.training.data import read_split

log = logging.getLogger("tumorseg.bundle")

PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "SimpleITK",
    "nibabel",
    "scikit-image",
    "pandas",
    "snakemake",
)
#: the per-case metrics the card summarises, those present
CARD_METRICS = ("dice", "hd95_pooled", "lesion_dice", "lesion_hd95", "mae", "psnr", "ssim")


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def commit(repo: str | Path) -> str:
    """The workflow's git commit (``+changes`` when tracked files differ), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown (git not found)"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def run_cases(splits_path: str | Path, fold) -> pd.DataFrame:
    """The split table with each case's role for this run (train, val, test or predict):
    a fold's training and validation cases as its training read them."""
    table = read_splits(splits_path)
    train, val = read_split(splits_path, fold)
    table.loc[table["case"].isin(train), "split"] = "train"
    table.loc[table["case"].isin(val), "split"] = "val"
    return table


def data_digest(preprocessed_dir: str | Path, cases: list[str], truth: str) -> str:
    """SHA-256 over the training and validation cases' preprocessed arrays, in case order."""
    digest = hashlib.sha256()
    for case in sorted(cases):
        for name in ("image.npy", f"{truth}.npy"):
            digest.update(f"{case}/{name}:".encode())
            digest.update(file_sha256(Path(preprocessed_dir) / case / name).encode())
    return digest.hexdigest()


def metrics_by_region(per_case: pd.DataFrame, roles: pd.DataFrame) -> dict:
    """split -> region -> metric -> {mean, median, n} of the run's scored cases."""
    if per_case.empty:
        return {}
    table = per_case.drop(columns=["split"]).merge(roles[["case", "split"]], on="case")
    if "region" not in table.columns:  # translation: one row per case, the whole image
        table["region"] = "image"
    out: dict = {}
    for split in ("val", "test"):
        rows = table[table["split"] == split]
        for region, cell in rows.groupby("region", sort=False):
            out.setdefault(split, {})[str(region)] = {
                m: {
                    "mean": float(cell[m].mean()),
                    "median": float(cell[m].median()),
                    "n": int(cell[m].notna().sum()),
                }
                for m in CARD_METRICS
                if m in cell.columns and cell[m].notna().any()
            }
    return out


def card(paths: dict, fold, config_digest: str, repo: str | Path, truth: str) -> dict:
    roles = run_cases(paths["splits"], fold)
    counts = roles.groupby(["split", "scanner"]).size()
    fitted = list(roles.loc[roles["split"].isin(["train", "val"]), "case"])
    per_case = read_tsv(paths["per_case"], "per-case metrics")
    return {
        "config_sha256": config_digest,
        "sheet_sha256": file_sha256(paths["sheet"]),
        "data_sha256": data_digest(paths["preprocessed_dir"], fitted, truth),
        "cases": {s: {k: int(v) for k, v in counts[s].items()} for s in counts.index.levels[0]},
        "metrics": metrics_by_region(per_case, roles),
        "training": read_json(paths["training"], "training record"),
        "versions": versions(),
        "commit": commit(repo),
    }


def card_markdown(data: dict) -> str:
    m, c = data["model"], data["card"]
    t = c["training"]
    lines = [
        f"# Model card: {m['run']}",
        "",
        f"- architecture: {m['settings']['architecture']}; task: {data['config']['task']}",
        f"- inputs: {', '.join(data['config']['modalities'])} ({data['input']} sheet)",
        f"- label map: {data['config'].get('label_convention')} "
        f"{data['config'].get('labels') or ''}".rstrip(),
        f"- trained: {t['epochs_trained']} epochs, best epoch {t['best_epoch']}, "
        f"{t['seconds'] / 60:.1f} min, precision {t['precision']}, on {t['hardware']}",
        f"- workflow commit: {c['commit']}",
        f"- config sha256: {c['config_sha256']}",
        f"- sheet sha256: {c['sheet_sha256']}; preprocessed training and validation data "
        f"sha256: {c['data_sha256']}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in c["versions"].items()),
        "",
        "## Cases per split and scanner",
        "",
        "| split | " + " | ".join(["scanner", "cases"]) + " |",
        "|---|---|---|",
    ]
    for split, by_scanner in c["cases"].items():
        lines += [f"| {split} | {s} | {n} |" for s, n in by_scanner.items()]
    for split, regions in c["metrics"].items():
        lines += ["", f"## {split} metrics (mean / median over cases)", ""]
        names = list(dict.fromkeys(k for r in regions.values() for k in r))
        lines += ["| region | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for region, metrics in regions.items():
            cells = [
                f"{metrics[n]['mean']:.4g} / {metrics[n]['median']:.4g}" if n in metrics else ""
                for n in names
            ]
            lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_bundle(manifest: dict, paths: dict, config_digest: str, repo, out: dict) -> None:
    """Write ``out["manifest"]`` (``bundle.json``: ``manifest`` with the model's sha256 and
    the card) and ``out["card"]`` (``card.md``)."""
    truth = "target" if manifest["config"]["task"] == "translation" else "label"
    data = dict(manifest)
    data["model"] = {**manifest["model"], "sha256": file_sha256(paths["model"])}
    data["card"] = card(paths, manifest["model"]["fold"], config_digest, repo, truth)
    write_json(out["manifest"], data)
    with atomic_path(out["card"]) as tmp:
        tmp.write_text(card_markdown(data))
    log.info("bundle written: %s, %s", out["manifest"], out["card"])
