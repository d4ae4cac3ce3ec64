rule ceiling:
    input:
        label="results/preprocessed/{case}/label.npy",
        geometry="results/preprocessed/{case}/geometry.json",
        reference=reference_image,
    output:
        "results/ceiling/{case}_seg.nii.gz",
    log:
        "logs/ceiling/{case}.log",
    conda:
        "../../envs/imaging.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        labels=LABELS,
        code=CODE["ceiling"],
    script:
        "../scripts/ceiling.py"


rule evaluate:
    input:
        pred=PRED,
        ref=lambda w: SAMPLES.loc[w.case, "seg"],
        ceiling="results/ceiling/{case}_seg.nii.gz",
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
        labels=LABELS,
        slice_metrics=STACKS,
        code=CODE["evaluate"],
    script:
        "../scripts/evaluate.py"


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
