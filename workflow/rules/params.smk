# Named functions that rules call for a job's threads, resources and params (instead of
# lambdas in the rule bodies).


def train_threads(wildcards):
    return model_settings(wildcards)["threads"]


def train_runtime(wildcards):
    return model_settings(wildcards)["runtime"]


def run_fold(wildcards):
    """The cross-validation fold a model run trains on (None without folds)."""
    return RUNS[wildcards.model][1]


def preprocessed_dir(wildcards, input):
    """The folder of the per-case preprocessed outputs (that of their summary)."""
    return str(Path(input.preprocessed).parent)


def demo_subject(wildcards):
    return DEMO.loc[wildcards.case, "subject"]


def demo_scanner(wildcards):
    return DEMO.loc[wildcards.case, "scanner"]


def demo_session(wildcards):
    return int(DEMO.loc[wildcards.case, "session"])


def demo_outdir(wildcards, output):
    """The demo dataset's folder (that of the case folders)."""
    return str(Path(output.seg).parents[1])
