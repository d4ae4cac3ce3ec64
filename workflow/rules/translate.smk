# Image translation (config task: translation): the synthetic target on the native grid, its
# resolution ceiling, MAE / MSE / PSNR / SSIM per case against the real target (with the
# trivial baseline beside), and the tables and pictures. Same rule names and outputs as the
# segmentation stage, so profiles and the report treat both alike.


for run, batch, cases in run_batches(CASES):
    jobs = synthesise_jobs(run, cases)

    rule:
        name:
            batch_rule("predict", run, batch)
        input:
            **scale_of(run),
            model=model_file_of(run),
            images=column(jobs, "image_npy"),
            geometries=column(jobs, "geometry_json"),
            inputs=column(jobs, "inputs"),
            masks=column(jobs, "mask_path"),
        output:
            synthetic=column(jobs, "out_path"),
        log:
            batch=f"logs/predict/{run}/batch{batch}.log",
            cases=expand("logs/predict/{model}/{case}.log", model=run, case=cases),
        benchmark:
            f"results/benchmarks/predict/{run}/batch{batch}.tsv"
        conda:
            "../../envs/tensorflow.yaml"
        threads: config["predict"]["threads"]
        resources:
            gpu=PREDICT_GPU,
            mem_mb=3000,
            runtime=batch_runtime(cases, 10, 0.2),
        params:
            cases=jobs,
            batch_size=config["predict"]["batch_size"],
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["synthesise"],
        script:
            "../scripts/synthesise.py"

    apply_profile("predict", batch_rule("predict", run, batch))


for batch, cases in assign_batches(LABELLED, config["predict"]["batches"]).items():
    jobs = translation_ceiling_jobs(cases)

    rule:
        name:
            f"ceiling_b{batch}"
        input:
            targets=column(jobs, "target_npy"),
            geometries=column(jobs, "geometry_json"),
            inputs=column(jobs, "inputs"),
            masks=column(jobs, "mask_path"),
        output:
            column(jobs, "out_path"),
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
            cases=jobs,
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["translation_ceiling"],
        script:
            "../scripts/translation_ceiling.py"

    apply_profile("ceiling", f"ceiling_b{batch}")


for run, batch, cases in run_batches(LABELLED):
    jobs = evaluate_translation_jobs(run, cases)

    rule:
        name:
            batch_rule("evaluate", run, batch)
        input:
            preds=column(jobs, "pred_path"),
            refs=column(jobs, "target_path"),
            ceilings=column(jobs, "ceiling_path"),
            geometries=column(jobs, "geometry_json"),
            inputs=column(jobs, "input_paths"),
            masks=column(jobs, "mask_path"),
        output:
            tsv=column(jobs, "out_path"),
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
            cases=jobs,
            brain_mask=config["preprocess"]["brain_mask"],
            brain_threshold=config["preprocess"]["brain_threshold"],
            code=CODE["evaluate_translation"],
        script:
            "../scripts/evaluate_translation.py"

    apply_profile("evaluate", batch_rule("evaluate", run, batch))


#: what the shared rules `aggregate` and `summarise` (aggregate.smk) run for translation
AGGREGATE = {
    "script": "../scripts/aggregate_translation.py",
    "summarise": "../scripts/summarise_translation.py",
    "inputs": {"geometries": preprocessed(["geometry.json"], LABELLED)},
    "params": {},
    "overlays": ("translation_cases.rst", "input, synthetic, real, error"),
    "comparison": "translation_comparison.rst",
}
