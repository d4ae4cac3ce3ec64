"""A bundle as one archive: ``tumorseg-export`` packs it, a run unpacks it.

The archive is a zip of the bundle's files under one folder named after the model run,
with fixed timestamps and permissions, so the same bundle gives the same bytes. Unpacking
goes to ``<root>/<stem>-<first 12 hex of the archive's sha256>/``, once: a second run finds
it there; a folder is renamed into place only when complete.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from tumorseg.bundle.manifest import MANIFEST, MODEL, file_sha256, locate, read_manifest
from tumorseg.errors import InputError
from tumorseg.io.atomic import atomic_path

#: the files of a bundle folder an archive carries (those present)
FILES = (
    MANIFEST,
    MODEL,
    "card.md",
    "target_scale.json",
    "history.csv",
    "curves.png",
    "summary.txt",
)
_EPOCH = (1980, 1, 1, 0, 0, 0)


def pack(bundle: str | Path, archive: str | Path) -> Path:
    """Write the bundle folder ``bundle`` (or its model file) as the zip ``archive``."""
    folder = locate(bundle)
    data = read_manifest(folder)
    top = data["model"]["run"]
    archive = Path(archive)
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in FILES:
            path = folder / name
            if path.is_file():
                info = zipfile.ZipInfo(f"{top}/{name}", date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    return archive


def _members(zf: zipfile.ZipFile, archive: Path) -> tuple[str, list[zipfile.ZipInfo]]:
    """The archive's one top folder and its files, refusing anything else (absolute paths,
    ``..``, several folders, no manifest)."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    tops = {PurePosixPath(i.filename).parts[0] for i in infos}
    bad = [
        i.filename
        for i in infos
        if i.filename.startswith("/") or ".." in PurePosixPath(i.filename).parts
        or len(PurePosixPath(i.filename).parts) != 2
    ]  # fmt: skip
    if bad or len(tops) != 1:
        raise InputError(
            f"not a model bundle archive (one folder of files expected; found "
            f"{sorted(tops)[:3]}{', unsafe names ' + str(bad[:3]) if bad else ''})",
            path=archive,
        )
    top = tops.pop()
    if f"{top}/{MANIFEST}" not in {i.filename for i in infos}:
        raise InputError(f"not a model bundle archive: no {top}/{MANIFEST}", path=archive)
    return top, infos


def unpack(archive: str | Path, root: str | Path) -> Path:
    """The folder of the unpacked bundle ``archive`` under ``root`` (unpacked if new)."""
    archive = Path(archive)
    digest = file_sha256(archive)[:12]
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"not a readable zip archive ({err})", path=archive) from None
    with zf:
        top, infos = _members(zf, archive)
        dest = Path(root) / f"{archive.name.removesuffix('.zip')}-{digest}"
        if (dest / top / MANIFEST).is_file():
            return dest / top
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for info in infos:
                target = tmp / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
            if not dest.exists():
                tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / top


def main(argv: list[str] | None = None) -> int:
    """``tumorseg-export results/models/unet -o unet.zip``: one archive of a bundle."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="tumorseg-export",
        description="Pack a trained model's bundle (results/models/<model>/ of a run: model, "
        "bundle.json, card.md, history) into one zip archive to share; apply it with "
        "`tumorseg-predict -m ARCHIVE` or config `pretrained: {<model>: ARCHIVE}`.",
    )
    ap.add_argument("bundle", help="the bundle folder (results/models/<model>) or its model.keras")
    ap.add_argument("-o", "--output", required=True, help="archive to write (.zip)")
    args = ap.parse_args(argv)
    if not args.output.endswith(".zip"):
        print("error: the archive's name must end in .zip", file=sys.stderr)
        return 1
    try:
        out = pack(args.bundle, args.output)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
