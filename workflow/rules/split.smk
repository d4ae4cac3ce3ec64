rule split:
    input:
        sheet="results/samples.tsv",
        pinned=config["split"]["pinned"] or [],
    output:
        splits="results/splits/splits.tsv",
        summary=report(
            "results/splits/summary.tsv",
            caption="../report/split_summary.rst",
            category="2. Splits",
        ),
        plot=report(
            "results/splits/splits.png",
            caption="../report/splits.rst",
            category="2. Splits",
        ),
    log:
        "logs/split.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        ratios=config["split"]["ratios"],
        seed=config["split"]["seed"],
        cv_folds=config["split"]["cv_folds"],
        pinned=config["split"]["pinned"],
        code=CODE["split"],
    script:
        "../scripts/split.py"
