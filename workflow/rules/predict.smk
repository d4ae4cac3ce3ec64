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
        seg="results/predictions/{model}/{case}_seg.nii.gz",
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
        convention=config["label_convention"],
        batch_size=config["predict"]["batch_size"],
    script:
        "../scripts/predict.py"
