"""Step logic of the brain-tumour segmentation workflow.

Every workflow step (``workflow/scripts/*.py``) is a thin wrapper around a function
of this package, so the logic is unit-tested without Snakemake.
"""

__version__ = "0.1.0"
