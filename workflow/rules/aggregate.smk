# A run's per-case table and pictures, and the summary and comparison of every run: one
# pair of rules for both tasks; what differs (scripts, captions, extra inputs) is the task's
# AGGREGATE (evaluate.smk or translate.smk).


rule aggregate:
    input:
        **AGGREGATE["inputs"],
        cases=expand(CASE_METRICS, model="{model}", case=LABELLED),
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
            caption=f"../report/{AGGREGATE['overlays'][0]}",
            category="4. Evaluation",
            labels={"model": "{model}", "figure": AGGREGATE["overlays"][1]},
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
        **AGGREGATE["params"],
        overlay_cases=LABELLED,
        validation_fold=validation_fold,
        code=CODE[Path(AGGREGATE["script"]).stem],
    script:
        AGGREGATE["script"]


rule summarise:
    input:
        expand("results/metrics/{model}/per_case.tsv", model=SCORED),
    output:
        summary=report(
            "results/metrics/summary.tsv",
            caption="../report/summary.rst",
            category="5. Comparison",
        ),
        comparison=report(
            "results/metrics/comparison.tsv",
            caption=f"../report/{AGGREGATE['comparison']}",
            category="5. Comparison",
        ),
    log:
        "logs/summarise.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        models=SCORED,
        ensembles=compared_members(),
        code=CODE[Path(AGGREGATE["summarise"]).stem],
    script:
        AGGREGATE["summarise"]
