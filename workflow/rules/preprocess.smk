rule sample_sheet:
    output:
        "results/samples.tsv",
    log:
        "logs/sample_sheet.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        table=SAMPLES[["case", "subject", "scanner", "labelled"]].to_dict("list"),
        code=CODE["sample_sheet"],
    script:
        "../scripts/sample_sheet.py"


rule preprocess:
    input:
        unpack(case_images),
    output:
        **{TRUTH: f"results/preprocessed/{{case}}/{TRUTH}.npy"},
        image="results/preprocessed/{case}/image.npy",
        slices="results/preprocessed/{case}/slices.tsv",
        geometry="results/preprocessed/{case}/geometry.json",
    log:
        "logs/preprocess/{case}.log",
    benchmark:
        "results/benchmarks/preprocess/{case}.tsv"
    conda:
        "../../envs/imaging.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        settings=PREPROCESS,
        code=CODE["preprocess"],
    script:
        "../scripts/preprocess.py"


rule preprocess_summary:
    input:
        geometry=expand("results/preprocessed/{case}/geometry.json", case=CASES),
        slices=expand("results/preprocessed/{case}/slices.tsv", case=CASES),
        arrays=preprocessed(["image.npy", f"{TRUTH}.npy"], CASES),
    output:
        report(
            "results/preprocessed/summary.tsv",
            caption="../report/preprocess_summary.rst",
            category="1. Preprocessing",
        ),
    log:
        "logs/preprocess_summary.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        code=CODE["preprocess_summary"],
    script:
        "../scripts/preprocess_summary.py"


for batch, cases in assign_batches(CASES, config["predict"]["batches"]).items():
    jobs = qc_jobs(cases)

    rule:
        name:
            f"qc_b{batch}"
        input:
            images=column(jobs, "image_npy"),
            labels=column(jobs, "label_npy"),
            geometries=column(jobs, "geometry_json"),
        output:
            pictures=[
                report(
                    job["out_png"],
                    caption="../report/qc.rst",
                    category="1. Preprocessing",
                    subcategory="QC per case",
                    labels={"case": job["case"]},
                )
                for job in jobs
            ],
        log:
            batch=f"logs/qc/batch{batch}.log",
            cases=expand("logs/qc/{case}.log", case=cases),
        conda:
            "../../envs/imaging.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=batch_runtime(cases, 5, 0.05),
        params:
            cases=jobs,
            code=CODE["qc"],
        script:
            "../scripts/qc.py"

    apply_profile("qc", f"qc_b{batch}")
