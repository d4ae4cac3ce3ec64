# The built-in synthetic demo dataset (config demo.enabled). Case IDs come from the
# config, so the DAG is known before any file exists.

if config["demo"]["enabled"]:
    DEMO = demo.case_table(
        config["demo"]["n_scanners"],
        config["demo"]["n_subjects"],
        config["demo"]["n_second_sessions"],
        config["demo"]["n_unlabelled"],
    ).set_index("case", drop=False)

    rule demo_case:
        output:
            **{mod: f"{DEMO_DIR}/{{case}}/{{case}}_{mod}.nii.gz" for mod in DEMO_MODALITIES},
            seg=f"{DEMO_DIR}/{{case}}/{{case}}_seg.nii.gz",
        log:
            "logs/demo/{case}.log",
        conda:
            "../../envs/imaging.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            subject=demo_subject,
            scanner=demo_scanner,
            session=demo_session,
            labelled=True,
            outdir=demo_outdir,
            seed=config["demo"]["seed"],
            modalities=DEMO_MODALITIES,
            code=CODE["demo_case"],
        script:
            "../scripts/demo_case.py"
