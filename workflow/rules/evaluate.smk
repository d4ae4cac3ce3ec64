# The resolution ceiling and the scores, in batches of cases (the same batches as the
# predictions): one process per batch, not per case; outputs and logs per case.


for batch, cases in assign_batches(LABELLED, config["predict"]["batches"]).items():
    jobs = ceiling_jobs(cases)

    rule:
        name:
            f"ceiling_b{batch}"
        input:
            labels=column(jobs, "label_npy"),
            geometries=column(jobs, "geometry_json"),
            references=column(jobs, "reference"),
        output:
            seg=column(jobs, "out_seg"),
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
            labels=LABELS,
            code=CODE["ceiling"],
        script:
            "../scripts/ceiling.py"

    apply_profile("ceiling", f"ceiling_b{batch}")


for run, batch, cases in run_batches(LABELLED, SCORED):
    jobs = evaluate_jobs(run, cases)

    rule:
        name:
            batch_rule("evaluate", run, batch)
        input:
            preds=column(jobs, "pred_path"),
            refs=column(jobs, "ref_path"),
            ceilings=column(jobs, "ceiling_path"),
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
            labels=LABELS,
            slice_metrics=STACKS,
            lesion_wise=config["evaluation"]["lesion_wise"],
            code=CODE["evaluate"],
        script:
            "../scripts/evaluate.py"

    apply_profile("evaluate", batch_rule("evaluate", run, batch))


#: what the shared rules `aggregate` and `summarise` (aggregate.smk) run for segmentation
AGGREGATE = {
    "script": "../scripts/aggregate.py",
    "summarise": "../scripts/summarise.py",
    # the entropy maps (predict.uncertainty) join the overlay pictures
    "inputs": {"uncertainties": uncertainty_maps} if UNCERTAINTY else {},
    "params": {"labels": LABELS},
    "overlays": ("overlays.rst", "overlays"),
    "comparison": "comparison.rst",
}
