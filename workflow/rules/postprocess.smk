# Post-processing chosen on validation (config postprocessing): per run, the choice on its
# validation predictions (out of fold for a fold ensemble), then batch jobs that apply it
# to every raw prediction, written as the run `<run>.pp` and scored beside it.


rule choose_postprocessing:
    input:
        preds=expand(PRED, model="{model}", case=LABELLED),
        refs=[SAMPLES.loc[c, "seg"] for c in LABELLED],
        splits="results/splits/splits.tsv",
    output:
        choice="results/postprocessing/{model}.json",
    log:
        "logs/postprocessing/{model}.log",
    benchmark:
        "results/benchmarks/postprocessing/{model}.tsv"
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=batch_runtime(LABELLED, 5, 0.2),
    params:
        cases=LABELLED,
        labels=LABELS,
        validation_fold=validation_fold,
        min_volumes=config["postprocessing"]["min_volumes"],
        relabel_volumes=config["postprocessing"]["relabel_volumes"],
        code=CODE["choose_postprocessing"],
    script:
        "../scripts/choose_postprocessing.py"


for run, batch, cases in run_batches(CASES, POSTPROCESSED):
    jobs = postprocess_jobs(run, cases)

    rule:
        name:
            batch_rule("postprocess", run, batch)
        input:
            preds=column(jobs, "pred_path"),
            references=column(jobs, "reference"),
            choice=f"results/postprocessing/{raw_run(run)}.json",
        output:
            seg=(
                [directory(p) for p in column(jobs, "out_path")]
                if STACKS
                else column(jobs, "out_path")
            ),
        log:
            batch=f"logs/postprocess/{run}/batch{batch}.log",
            cases=expand("logs/postprocess/{model}/{case}.log", model=run, case=cases),
        benchmark:
            f"results/benchmarks/postprocess/{run}/batch{batch}.tsv"
        conda:
            "../../envs/imaging.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=batch_runtime(cases, 5, 0.1),
        params:
            cases=jobs,
            labels=LABELS,
            code=CODE["postprocess"],
        script:
            "../scripts/postprocess.py"

    apply_profile("postprocess", batch_rule("postprocess", run, batch))
