rule train:
    input:
        splits="results/splits/splits.tsv",
        # every case's arrays, through the summary that depends on them all (listing the
        # arrays here would make each prediction job's dependency check O(cases))
        preprocessed="results/preprocessed/summary.tsv",
    output:
        **({"scale": "results/models/{model}/target_scale.json"} if TRANSLATION else {}),
        model="results/models/{model}/model.keras",
        history="results/models/{model}/history.csv",
        record="results/models/{model}/training.json",
        curves=report(
            "results/models/{model}/curves.png",
            caption="../report/curves.rst",
            category="3. Training",
            labels={"model": "{model}", "figure": "curves"},
        ),
        summary=report(
            "results/models/{model}/summary.txt",
            caption="../report/model_summary.rst",
            category="3. Training",
            labels={"model": "{model}", "figure": "summary"},
        ),
    log:
        "logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    threads: train_threads
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        settings=training_settings,
        labels=LABELS,
        fold=run_fold,
        windows=train_windows,
        deterministic=config["training"]["deterministic"],
        preprocessed_dir=preprocessed_dir,
        checkpoint_dir="results/checkpoints/{model}",
        tensorboard_dir="results/models/{model}/tensorboard",
        code=CODE["train"],
    script:
        "../scripts/train.py"
