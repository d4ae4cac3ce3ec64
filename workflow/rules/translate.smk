# Image translation (config task: translation): the synthetic target on the native grid, its
# resolution ceiling, MAE / MSE / PSNR / SSIM per case against the real target (with the
# trivial baseline beside), and the tables and pictures. Same rule names and outputs as the
# segmentation stage, so profiles and the report treat both alike.


def scale_file(wildcards):
    """The training data's target scale (translation.rescale_output only)."""
    if not config["translation"]["rescale_output"]:
        return {}
    return {"scale": str(Path(model_file(wildcards)).parent / "target_scale.json")}


rule predict:
    input:
        unpack(brain_mask_file),
        unpack(scale_file),
        model=model_file,
        image="results/preprocessed/{case}/image.npy",
        geometry="results/preprocessed/{case}/geometry.json",
        inputs=input_files,
    output:
        synthetic=PRED,
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
        batch_size=config["predict"]["batch_size"],
        brain_threshold=config["preprocess"]["brain_threshold"],
        code=CODE["synthesise"],
    script:
        "../scripts/synthesise.py"


rule ceiling:
    input:
        unpack(brain_mask_file),
        target="results/preprocessed/{case}/target.npy",
        geometry="results/preprocessed/{case}/geometry.json",
        inputs=input_files,
    output:
        CEILING,
    log:
        "logs/ceiling/{case}.log",
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        brain_threshold=config["preprocess"]["brain_threshold"],
        code=CODE["translation_ceiling"],
    script:
        "../scripts/translation_ceiling.py"


rule evaluate:
    input:
        unpack(brain_mask_file),
        pred=PRED,
        ref=lambda w: SAMPLES.loc[w.case, "seg"],
        ceiling=CEILING,
        geometry="results/preprocessed/{case}/geometry.json",
        inputs=input_files,
    output:
        tsv="results/metrics/{model}/cases/{case}.tsv",
    log:
        "logs/evaluate/{model}/{case}.log",
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        brain_mask=config["preprocess"]["brain_mask"],
        brain_threshold=config["preprocess"]["brain_threshold"],
        code=CODE["evaluate_translation"],
    script:
        "../scripts/evaluate_translation.py"


rule aggregate:
    input:
        cases=expand("results/metrics/{{model}}/cases/{case}.tsv", case=LABELLED),
        splits="results/splits/splits.tsv",
        images=[SAMPLES.loc[c, IMAGE_COLUMNS[0]] for c in LABELLED],
        refs=[SAMPLES.loc[c, "seg"] for c in LABELLED],
        preds=expand(PRED, model="{model}", case=LABELLED),
        geometries=preprocessed(["geometry.json"], LABELLED),
    output:
        per_case=report(
            "results/metrics/{model}/per_case.tsv",
            caption="../report/per_case.rst",
            category="4. Evaluation",
            labels={"model": "{model}", "table": "per case"},
        ),
        boxplots=report(
            "results/metrics/{model}/boxplots.png",
            caption="../report/boxplots.rst",
            category="4. Evaluation",
            labels={"model": "{model}", "figure": "box plots"},
        ),
        overlays=report(
            "results/metrics/{model}/overlays.png",
            caption="../report/translation_cases.rst",
            category="4. Evaluation",
            labels={"model": "{model}", "figure": "input, synthetic, real, error"},
        ),
    log:
        "logs/aggregate/{model}.log",
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        overlay_cases=LABELLED,
        code=CODE["aggregate_translation"],
    script:
        "../scripts/aggregate_translation.py"


rule summarise:
    input:
        expand("results/metrics/{model}/per_case.tsv", model=list(RUNS)),
    output:
        summary=report(
            "results/metrics/summary.tsv",
            caption="../report/summary.rst",
            category="5. Comparison",
        ),
        comparison=report(
            "results/metrics/comparison.tsv",
            caption="../report/translation_comparison.rst",
            category="5. Comparison",
        ),
    log:
        "logs/summarise.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        models=list(RUNS),
        code=CODE["summarise_translation"],
    script:
        "../scripts/summarise_translation.py"
