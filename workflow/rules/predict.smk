PROBABILITIES = (
    {"probs": "results/predictions/{model}/{case}_probs.nii.gz"}
    if config["predict"]["save_probabilities"]
    else {}
)


rule predict:
    input:
        model=model_file,
        image="results/preprocessed/{case}/image.npy",
        geometry="results/preprocessed/{case}/geometry.json",
        reference=reference_image,
    output:
        **PROBABILITIES,
        seg=directory(PRED) if STACKS else PRED,
    log:
        "logs/predict/{model}/{case}.log",
    benchmark:
        "results/benchmarks/predict/{model}/{case}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        labels=LABELS,
        batch_size=config["predict"]["batch_size"],
        windows=lambda w: (
            {k: config["predict"][k] for k in ("overlap", "gaussian")}
            if model_settings(w)["architecture"] == "unet3d"
            else None
        ),
        code=CODE["predict"],
    script:
        "../scripts/predict.py"
