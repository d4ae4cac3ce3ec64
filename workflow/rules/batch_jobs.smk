# Per-case arguments of the batch jobs (qc, predict, evaluate, ceiling): one dict per case.
# The batch rules take their input and output lists from these dicts (`column`), so each
# per-case path is spelled once, here.


def column(jobs, key):
    """The values of ``key`` in a batch's per-case dicts (those that have it), each once, in
    case order: a batch rule's input or output list."""
    return list(dict.fromkeys(v for job in jobs if key in job for v in _as_list(job[key])))


def _as_list(value):
    return value if isinstance(value, list) else [value]


def predict_jobs(run, cases):
    """Each case's arguments of `predict_batch` (the same paths as the rule's input and
    output lists)."""
    return [
        {
            "case": c,
            "image_npy": f"results/preprocessed/{c}/image.npy",
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "reference": reference_of(c),
            "out_seg": PRED.format(model=run, case=c),
            **({"out_probs": PROBS.format(model=run, case=c)} if SAVE_PROBS else {}),
            **({"out_uncertainty": ENTROPY.format(model=run, case=c)} if averages(run) else {}),
        }
        for c in cases
    ]


def postprocess_jobs(run, cases):
    """Each case's arguments of `postprocess_batch`: the raw run's prediction in, the
    post-processed run's out."""
    return [
        {
            "case": c,
            "pred_path": PRED.format(model=raw_run(run), case=c),
            "reference": reference_of(c),
            "out_path": PRED.format(model=run, case=c),
        }
        for c in cases
    ]


def ceiling_jobs(cases):
    return [
        {
            "case": c,
            "label_npy": f"results/preprocessed/{c}/label.npy",
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "reference": reference_of(c),
            "out_seg": CEILING.format(case=c),
        }
        for c in cases
    ]


def evaluate_jobs(run, cases):
    return [
        {
            "case": c,
            "pred_path": PRED.format(model=run, case=c),
            "ref_path": SAMPLES.loc[c, "seg"],
            "ceiling_path": CEILING.format(case=c),
            "out_path": CASE_METRICS.format(model=run, case=c),
        }
        for c in cases
    ]


def scale_of(run):
    """The training data's target scale (translation.rescale_output only)."""
    if not config["translation"]["rescale_output"]:
        return {}
    return {"scale": str(Path(model_file_of(run)).parent / "target_scale.json")}


def mask_arg(case):
    mask = SAMPLES.loc[case].get("mask", "")
    return {"mask_path": mask} if mask else {}


def inputs_of(case):
    """The native input modality files of a case, in `modalities` order."""
    return [SAMPLES.loc[case, m] for m in config["modalities"]]


def synthesise_jobs(run, cases):
    return [
        {
            "case": c,
            "image_npy": f"results/preprocessed/{c}/image.npy",
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "inputs": inputs_of(c),
            "out_path": PRED.format(model=run, case=c),
            **mask_arg(c),
        }
        for c in cases
    ]


def translation_ceiling_jobs(cases):
    return [
        {
            "case": c,
            "target_npy": f"results/preprocessed/{c}/target.npy",
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "inputs": inputs_of(c),
            "out_path": CEILING.format(case=c),
            **mask_arg(c),
        }
        for c in cases
    ]


def evaluate_translation_jobs(run, cases):
    return [
        {
            "case": c,
            "pred_path": PRED.format(model=run, case=c),
            "target_path": SAMPLES.loc[c, "seg"],
            "ceiling_path": CEILING.format(case=c),
            "input_paths": inputs_of(c),
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "out_path": CASE_METRICS.format(model=run, case=c),
            **mask_arg(c),
        }
        for c in cases
    ]


def qc_jobs(cases):
    return [
        {
            "case": c,
            "image_npy": f"results/preprocessed/{c}/image.npy",
            "label_npy": f"results/preprocessed/{c}/{TRUTH}.npy",
            "geometry_json": f"results/preprocessed/{c}/geometry.json",
            "out_png": f"results/preprocessed/{c}/qc.png",
        }
        for c in cases
    ]
