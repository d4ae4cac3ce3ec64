# A trained model's bundle: bundle.json (what shapes its input and output) and the model
# card beside model.keras, so that the folder (or its `tumorseg-export` archive) can be
# applied to new patients (`pretrained`, `tumorseg-predict`).


rule bundle:
    input:
        **({"scale": "results/models/{model}/target_scale.json"} if TRANSLATION else {}),
        model="results/models/{model}/model.keras",
        record="results/models/{model}/training.json",
        splits="results/splits/splits.tsv",
        sheet="results/samples.tsv",
        preprocessed="results/preprocessed/summary.tsv",
        per_case="results/metrics/{model}/per_case.tsv",
    output:
        manifest="results/models/{model}/bundle.json",
        card=report(
            "results/models/{model}/card.md",
            caption="../report/card.rst",
            category="3. Training",
            labels={"model": "{model}", "figure": "model card"},
        ),
    log:
        "logs/bundle/{model}.log",
    localrule: True
    conda:
        "../../envs/imaging.yaml"
    params:
        manifest=bundle_manifest,
        config_digest=bundle_config_digest,
        preprocessed_dir=preprocessed_dir,
        code=CODE["bundle"],
    script:
        "../scripts/bundle.py"
