# Prediction in batches: one job per model run and batch of cases (config predict.batches;
# a case's batch is a hash of its ID, so adding or changing a case reruns only its batch).
# TensorFlow is imported and the model loaded once per job; the outputs are per case.


for run, batch, cases in run_batches(CASES):
    jobs = predict_jobs(run, cases)

    rule:
        name:
            batch_rule("predict", run, batch)
        input:
            **({"splits": "results/splits/splits.tsv"} if members_of(run) else {}),
            model=model_file_of(run),
            # an ensemble predicts a case of fold f with the fold-f models (out of fold)
            images=column(jobs, "image_npy"),
            geometries=column(jobs, "geometry_json"),
            references=column(jobs, "reference"),
        output:
            **({"probs": column(jobs, "out_probs")} if SAVE_PROBS else {}),
            **({"uncertainty": column(jobs, "out_uncertainty")} if averages(run) else {}),
            seg=(
                [directory(p) for p in column(jobs, "out_seg")]
                if STACKS
                else column(jobs, "out_seg")
            ),
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
            labels=LABELS,
            batch_size=config["predict"]["batch_size"],
            windows=windows_of(run),
            mirror=mirror_of(run),
            members=members_of(run),
            code=CODE["predict"],
        script:
            "../scripts/predict.py"

    apply_profile("predict", batch_rule("predict", run, batch))
