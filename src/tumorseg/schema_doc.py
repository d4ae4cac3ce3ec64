"""Render the config schema as the key reference in ``config/README.md``.

``python -m tumorseg.schema_doc workflow/schemas/config.schema.yaml > config/README.md``
(a test checks that the file is up to date).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HEADER = """# Configuration keys

`config/config.yaml` runs the workflow on the built-in demo dataset. Override keys with your own
file: `snakemake --configfile my.yaml` (merged over the defaults). Every key is validated against
`workflow/schemas/config.schema.yaml` before any job runs; missing keys take the defaults below.
Runtime settings (cores, GPUs, cluster) live in `profiles/`, not here.

This page is generated from the schema: `python -m tumorseg.schema_doc > config/README.md`.

| key | type | default | description |
|---|---|---|---|
"""


def _type(node: dict) -> str:
    t = node.get("type", "")
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if isinstance(t, list):
        return " or ".join(t)
    return t


def _rows(node: dict, prefix: str, defs: dict):
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    for key, sub in node.get("properties", {}).items():
        name = f"{prefix}{key}"
        default = sub.get("default", "")
        shown = "" if default == "" and "default" not in sub else f"`{json.dumps(default)}`"
        desc = sub.get("description", "").replace("|", "\\|").replace("\n", " ")
        yield f"| `{name}` | {_type(sub)} | {shown} | {desc} |"
        if "properties" in sub:
            yield from _rows(sub, name + ".", defs)
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and ("$ref" in extra or "properties" in extra):
            yield from _rows(extra, name + ".<name>.", defs)


def render(schema_path: str | Path) -> str:
    schema = yaml.safe_load(Path(schema_path).read_text())
    return HEADER + "\n".join(_rows(schema, "", schema.get("$defs", {}))) + "\n"


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "workflow/schemas/config.schema.yaml"
    sys.stdout.write(render(path))
