# The resolution ceiling and the scores, in batches of cases (the same batches as the
# predictions): one process per batch, not per case; outputs and logs per case.


for batch, cases in assign_batches(LABELLED, config["predict"]["batches"]).items():

    rule:
        name:
            f"ceiling_b{batch}"
        input:
            labels=preprocessed(["label.npy"], cases),
            geometries=preprocessed(["geometry.json"], cases),
            references=[reference_of(c) for c in cases],
        output:
            seg=expand(CEILING, case=cases),
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
            cases=ceiling_jobs(cases),
            labels=LABELS,
            code=CODE["ceiling"],
        script:
            "../scripts/ceiling.py"

    apply_profile("ceiling", f"ceiling_b{batch}")


for run, batch, cases in run_batches(LABELLED):

    rule:
        name:
            batch_rule("evaluate", run, batch)
        input:
            preds=expand(PRED, model=run, case=cases),
            refs=[SAMPLES.loc[c, "seg"] for c in cases],
            ceilings=expand(CEILING, case=cases),
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
            cases=evaluate_jobs(run, cases),
            labels=LABELS,
            slice_metrics=STACKS,
            code=CODE["evaluate"],
        script:
            "../scripts/evaluate.py"

    apply_profile("evaluate", batch_rule("evaluate", run, batch))


rule aggregate:
    input:
        cases=expand("results/metrics/{{model}}/cases/{case}.tsv", case=LABELLED),
        splits="results/splits/splits.tsv",
        images=[SAMPLES.loc[c, IMAGE_COLUMNS[0]] for c in LABELLED],
        refs=[SAMPLES.loc[c, "seg"] for c in LABELLED],
        preds=expand(PRED, model="{model}", case=LABELLED),
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
            caption="../report/overlays.rst",
            category="4. Evaluation",
            labels={"model": "{model}", "figure": "overlays"},
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
        labels=LABELS,
        overlay_cases=LABELLED,
        code=CODE["aggregate"],
    script:
        "../scripts/aggregate.py"


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
            caption="../report/comparison.rst",
            category="5. Comparison",
        ),
    log:
        "logs/summarise.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        models=list(RUNS),
        code=CODE["summarise"],
    script:
        "../scripts/summarise.py"
