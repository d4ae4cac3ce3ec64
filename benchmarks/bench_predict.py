"""One case from reading to the written native-space NIfTI, with the default model.

Target (issue 6): at most 3 s on 2 CPU cores. Prints the split between reading, the model,
the inversion to native space and writing, for a BraTS-grid case (no resampling) and a case
stored on another grid (1.2 mm RAS, resampled both ways). The model is the default
architecture with random weights (the same compute as a trained one); the process start,
TensorFlow import and model load are printed separately (paid once per prediction job).

With ``--gpu`` the model runs on the first visible GPU (the script stops with a message
when TensorFlow sees none) and the per-case times are a GPU user's; ``--mixed`` builds the
model under the ``mixed_float16`` policy, as training with ``mixed_precision: true`` saves it.

With ``--tta`` the same case is also predicted mirrored (``predict.tta: mirror``) and with the
entropy map; with ``--ensemble K`` also as a fold ensemble of K models (``K`` copies of the
model, the workflow's own ensemble forward pass: each member predicts, folds averaged) and
the same ensemble mirrored. Variants run interleaved, so they see the same noise; each is
printed as a ratio to the plain prediction.

Usage: python benchmarks/bench_predict.py [--repeats N] [--threads T] [--gpu [--mixed]]
       [--tta] [--ensemble K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

MODS = ["flair", "t1", "t1ce", "t2"]
REAL = ROOT.parent / "shared/data/real/TCGA-FG-6692"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu", action="store_true", help="run the model on the first GPU")
    ap.add_argument("--mixed", action="store_true", help="a mixed_float16 model")
    ap.add_argument(
        "--tta",
        action="store_true",
        help="also predict with predict.tta: mirror and predict.uncertainty, runs interleaved",
    )
    ap.add_argument(
        "--ensemble", type=int, default=0, metavar="K", help="also a K-model fold ensemble"
    )
    args = ap.parse_args()
    if not args.gpu:
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU figures, even on a GPU machine

    t0 = time.perf_counter()
    from tumorseg.inference.predict import configure_threads, load_model

    configure_threads(args.threads)
    import keras  # noqa: F401
    from training_fixtures import model_defaults

    from tumorseg.inference.predict import predict_case
    from tumorseg.training.models import build_model

    t_import = time.perf_counter() - t0
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if args.gpu and not gpus:
        sys.exit("--gpu: TensorFlow sees no GPU (install tensorflow[and-cuda], check nvidia-smi)")
    device = gpus[0].name if args.gpu else "CPU"
    settings = model_defaults(ROOT / "workflow/schemas/config.schema.yaml")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = tmp / "model.keras"
        policy = "mixed_float16" if args.mixed else None
        build_model(settings, n_channels=4, dtype_policy=policy).save(model_path)
        t0 = time.perf_counter()
        model = load_model(str(model_path))
        t_load = time.perf_counter() - t0

        cases = {}
        if REAL.is_dir():
            c = REAL.name
            cases["BraTS grid (real case)"] = (
                c,
                {m: str(REAL / f"{c}_{m}.nii.gz") for m in MODS},
                str(REAL / f"{c}_seg.nii.gz"),
            )
        from synth import preprocess, write_case

        grid = {
            "size": (200, 200, 130),
            "spacing": (1.2, 1.2, 1.2),
            "origin": (119.4, 119.4, -77.4),
            "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        }
        paths = write_case(tmp / "data", "ras", grid)
        cases["1.2 mm RAS grid (resampled)"] = ("ras", {m: paths[m] for m in MODS}, paths["seg"])

        print(
            f"device {device}{' (mixed_float16)' if args.mixed else ''}, "
            f"threads={args.threads}, median of {args.repeats} runs per case"
        )
        print(f"once per job: TensorFlow import {t_import:.2f} s, model load {t_load:.2f} s")
        variants = {"plain": {}}
        if args.tta:
            variants["mirror"] = {"mirror": (-2,)}
            variants["mirror + entropy"] = {"mirror": (-2,), "out_uncertainty": "entropy.nii.gz"}
        if args.ensemble:
            variants[f"ensemble of {args.ensemble}"] = {"ensemble": ()}
            variants[f"ensemble of {args.ensemble}, mirror"] = {"ensemble": (-2,)}
        models = [model] + [load_model(str(model_path)) for _ in range(args.ensemble - 1)]
        for name, (case, mods, seg) in cases.items():
            _, out = preprocess(case, {**mods, "seg": seg}, tmp / case, threads=args.threads)
            runs = {v: [] for v in variants}
            for i in range(args.repeats + 1):
                for variant, extra in variants.items():  # interleaved: the same noise
                    if "out_uncertainty" in extra:
                        extra = {**extra, "out_uncertainty": str(tmp / case / "entropy.nii.gz")}
                    t0 = time.perf_counter()
                    if "ensemble" in extra:
                        parts = _ensemble_case(
                            models, str(model_path), extra["ensemble"], case, out, mods, tmp
                        )
                    else:
                        parts = predict_case(
                            case,
                            str(model_path),
                            out["image.npy"],
                            out["geometry.json"],
                            mods["flair"],
                            "brats2017",
                            32,
                            str(tmp / case / "seg.nii.gz"),
                            model=model,
                            **extra,
                        )
                    total = time.perf_counter() - t0
                    if i:  # the first call traces the model
                        runs[variant].append((total, parts))
            totals = {}
            for variant, done in runs.items():
                totals[variant] = statistics.median(r[0] for r in done)
                split = {k: statistics.median(r[1][k] for r in done) for k in done[0][1]}
                detail = ", ".join(f"{k} {v:.2f} s" for k, v in split.items())
                print(f"{name}, {variant}: {totals[variant]:.2f} s per case: {detail}")
            for variant in list(variants)[1:]:
                print(f"{name}: {variant} / plain = {totals[variant] / totals['plain']:.2f}")


def _ensemble_case(models, model_path, mirror, case, out, mods, tmp):
    """One case through the workflow's ensemble path: every member, averaged, written."""
    from tumorseg.inference.batch import forward_ensemble_case
    from tumorseg.inference.export import write_case_prediction

    members = [
        {"name": "unet", "fold": k, "path": model_path, "windows": None, "mirror": list(mirror)}
        for k in range(len(models))
    ]
    job = {
        "case": case,
        "image_npy": out["image.npy"],
        "geometry_json": out["geometry.json"],
        "reference": mods["flair"],
    }
    result = forward_ensemble_case(models, members, job, -1, 32)
    return write_case_prediction(
        case, result, mods["flair"], "brats2017", str(tmp / case / "seg.nii.gz")
    )


if __name__ == "__main__":
    main()
