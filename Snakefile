from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/batch_jobs.smk"
include: "workflow/rules/params.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"


if TRANSLATION:

    include: "workflow/rules/translate.smk"

else:

    include: "workflow/rules/predict.smk"
    include: "workflow/rules/evaluate.smk"
    include: "workflow/rules/postprocess.smk"


include: "workflow/rules/aggregate.smk"
include: "workflow/rules/bundle.smk"


rule all:
    default_target: True
    input:
        all_targets(),
