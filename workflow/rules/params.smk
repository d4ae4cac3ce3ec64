# Named functions that rules call for a job's threads, resources and params (instead of
# lambdas in the rule bodies).


def train_threads(wildcards):
    return model_settings(wildcards)["threads"]


def train_runtime(wildcards):
    return model_settings(wildcards)["runtime"]


def windows_of(run):
    """The sliding window (`predict.overlap`, `predict.gaussian`) of a 3D model run: its
    prediction and the validation that picks its best epoch use it; None for 2D (and for
    an ensemble, whose members have their own)."""
    run = model_run(run)
    if run in ENSEMBLES or config["models"][RUNS[run][0]]["architecture"] != "unet3d":
        return None
    return {k: config["predict"][k] for k in ("overlap", "gaussian")}


def mirror_of(run):
    """The batch axes a segmentation run's prediction mirrors (`predict.tta: mirror`, or a
    `.tta` twin): the axes its training augmentation flipped (`augment.flip`), else none
    (an ensemble's members have their own)."""
    if model_run(run) in ENSEMBLES:
        return []
    return mirror_axes_of(model_run(run), mirrors(run))


def mirror_axes_of(run, mirrored):
    """The batch axes a trained run's model mirrors when ``mirrored`` (its flips)."""
    augment = config["models"][RUNS[run][0]].get("augment", {})
    return list(mirror_axes("mirror" if mirrored else "none", augment))


def train_windows(wildcards):
    return windows_of(wildcards.model)


def run_fold(wildcards):
    """The cross-validation fold a model run trains on (None without folds)."""
    return RUNS[wildcards.model][1]


def preprocessed_dir(wildcards, input):
    """The folder of the per-case preprocessed outputs (that of their summary)."""
    return str(Path(input.preprocessed).parent)


def demo_subject(wildcards):
    return DEMO.loc[wildcards.case, "subject"]


def demo_scanner(wildcards):
    return DEMO.loc[wildcards.case, "scanner"]


def demo_session(wildcards):
    return int(DEMO.loc[wildcards.case, "session"])


def demo_outdir(wildcards, output):
    """The demo dataset's folder (that of the case folders)."""
    return str(Path(output.seg).parents[1])


def uncertainty_maps(wildcards):
    """The entropy maps of a run's labelled cases (where it writes them) for its overlays."""
    return (
        expand(ENTROPY, model=wildcards.model, case=LABELLED) if averages(wildcards.model) else []
    )
