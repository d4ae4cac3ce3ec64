# Image translation (config task: translation): the synthetic target on the native grid, its
# resolution ceiling, MAE / MSE / PSNR / SSIM per case against the real target (with the
# trivial baseline beside), and the tables and pictures. Same rule names and outputs as the
# segmentation stage, so profiles and the report treat both alike.


for run, batch, cases in run_batches(CASES):

    rule:
        name:
            batch_rule("predict", run, batch)
        input:
            **scale_of(run),
            model=model_file_of(run),
            images=preprocessed(["image.npy"], cases),
            geometries=preprocessed(["geometry.json"], cases),
            inputs=native_inputs(cases),
            masks=masks_of(cases),
        output:
            synthetic=expand(PRED, model=run, case=cases),
        log:
            batch=f"logs/predict/{run}/batch{batch}.log",
            cases=expand("logs/predict/{model}/{case}.log", model=run, case=cases),
        benchmark:
            f"results/benchmarks/predict/{run}/batch{batch}.tsv"
        conda:
            "../../envs/tensorflow.yaml"
        threads: config["predict"]["threads"]
        resources:
            mem_mb=3000,
            runtime=batch_runtime(cases, 10, 0.2),
        params:
            cases=synthesise_jobs(run, cases),
            batch_size=config["predict"]["batch_size"],
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["synthesise"],
        script:
            "../scripts/synthesise.py"

    apply_profile("predict", batch_rule("predict", run, batch))


for batch, cases in assign_batches(LABELLED, config["predict"]["batches"]).items():

    rule:
        name:
            f"ceiling_b{batch}"
        input:
            targets=preprocessed(["target.npy"], cases),
            geometries=preprocessed(["geometry.json"], cases),
            inputs=native_inputs(cases),
            masks=masks_of(cases),
        output:
            expand(CEILING, case=cases),
        log:
            batch=f"logs/ceiling/batch{batch}.log",
            cases=expand("logs/ceiling/{case}.log", case=cases),
        benchmark:
            f"results/benchmarks/ceiling/batch{batch}.tsv"
        conda:
            "../../envs/imaging.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=batch_runtime(cases, 5, 0.1),
        params:
            cases=translation_ceiling_jobs(cases),
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["translation_ceiling"],
        script:
            "../scripts/translation_ceiling.py"

    apply_profile("ceiling", f"ceiling_b{batch}")


for run, batch, cases in run_batches(LABELLED):

    rule:
        name:
            batch_rule("evaluate", run, batch)
        input:
            preds=expand(PRED, model=run, case=cases),
            refs=[SAMPLES.loc[c, "seg"] for c in cases],
            ceilings=expand(CEILING, case=cases),
            geometries=preprocessed(["geometry.json"], cases),
            inputs=native_inputs(cases),
            masks=masks_of(cases),
        output:
            tsv=expand("results/metrics/{model}/cases/{case}.tsv", model=run, case=cases),
        log:
            batch=f"logs/evaluate/{run}/batch{batch}.log",
            cases=expand("logs/evaluate/{model}/{case}.log", model=run, case=cases),
        benchmark:
            f"results/benchmarks/evaluate/{run}/batch{batch}.tsv"
        conda:
            "../../envs/imaging.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=batch_runtime(cases, 5, 0.1),
        params:
            cases=evaluate_translation_jobs(run, cases),
            brain_mask=config["preprocess"]["brain_mask"],
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["evaluate_translation"],
        script:
            "../scripts/evaluate_translation.py"

    apply_profile("evaluate", batch_rule("evaluate", run, batch))


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
