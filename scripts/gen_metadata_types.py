#!/usr/bin/env python3
"""Generate the lab extension's TypeScript view of ``metadata.timeback`` from the Python side.

    python scripts/gen_metadata_types.py          # rewrite both generated files
    python scripts/gen_metadata_types.py --check  # exit 1 if a committed one is stale

- ``labextension/src/metadata-schema.ts``: the types of the current version, from its JSON Schema
  in ``timeback_jupyter/notebook_metadata/schemas``, so the extension and the server cannot
  disagree on the shape. Only the keywords our schemas use are understood (a new one is an
  error here, not a silently wrong type).
- ``labextension/test/merge-cases.ts``: ``tests/notebook_metadata_cases.json``, the merge cases
  that the Python merge (pytest) and the extension's (vitest) must both pass.

tests/test_notebook_metadata.py fails when either file is stale. The output is already as
prettier formats it (``jlpm lint`` checks it). No npm dependency.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "timeback_jupyter" / "notebook_metadata" / "schemas"
TARGET = REPO / "labextension" / "src" / "metadata-schema.ts"
CASES = REPO / "tests" / "notebook_metadata_cases.json"
CASES_TARGET = REPO / "labextension" / "test" / "merge-cases.ts"
PREFIX = "Timeback"
WIDTH = 100
# Keywords that only constrain values (checked by the server) or document: no type of their own.
VALUE_ONLY = {
    "description", "errorMessage", "maxLength", "minLength", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "anyOf", "title", "$schema", "$id", "$defs",
}  # fmt: skip
SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean",
           "null": "null"}  # fmt: skip


def current_version() -> int:
    return max(int(p.stem[1:]) for p in SCHEMAS.glob("v*.json"))


def type_name(ref: str) -> str:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise ValueError(f"only local $defs references are understood, not {ref}")
    return PREFIX + ref[len(prefix) :].capitalize()


def literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


def ts_type(node: Any) -> list[str]:
    """The alternatives of the TypeScript type of ``node`` (one, or a union's members)."""
    if node is False or (isinstance(node, dict) and node.get("not") == {}):
        return ["never"]
    if node is True or node == {}:
        return ["unknown"]
    unknown = set(node) - VALUE_ONLY - {"$ref", "const", "enum", "type", "not"}
    if unknown - {"properties", "required"}:
        raise ValueError(f"keywords not understood by the generator: {sorted(unknown)}")
    if "$ref" in node:
        return [type_name(node["$ref"])]
    if "const" in node:
        return [literal(node["const"])]
    if "enum" in node:
        return [literal(v) for v in node["enum"]]
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if kinds == ["object"]:
        return ["Record<string, unknown>"]
    if any(k not in SCALARS for k in kinds):
        raise ValueError(f"type not understood by the generator: {node.get('type')!r}")
    return [SCALARS[k] for k in kinds]


def comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    lines = textwrap.wrap(text, WIDTH - len(indent) - 3)
    if len(lines) == 1 and len(indent) + len(lines[0]) + 7 <= WIDTH:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}" for line in lines), f"{indent} */"]


def member(name: str, node: Any, optional: bool) -> list[str]:
    doc = node.get("description") if isinstance(node, dict) else None
    head = f"  {name}{'?' if optional else ''}:"
    options = ts_type(node)
    one_line = f"{head} {' | '.join(options)};"
    if len(one_line) <= WIDTH or len(options) == 1:
        return [*comment(doc, "  "), one_line]
    # as prettier breaks a union that does not fit
    body = [f"    | {option}" for option in options]
    body[-1] += ";"
    return [*comment(doc, "  "), head, *body]


def interface(name: str, node: dict[str, Any]) -> list[str]:
    if node.get("type") != "object":
        raise ValueError(f"{name}: only object definitions become interfaces")
    required = set(node.get("required", []))
    out = [*comment(node.get("description"), ""), f"export interface {name} {{"]
    for prop, sub in node.get("properties", {}).items():
        out += member(prop, sub, prop not in required)
    # Keys the schema does not name belong to others: every writer keeps them.
    out += ["  [key: string]: unknown;", "}"]
    return out


def render(version: int | None = None) -> str:
    version = current_version() if version is None else version
    schema = json.loads((SCHEMAS / f"v{version}.json").read_text(encoding="utf-8"))
    source = f"timeback_jupyter/notebook_metadata/schemas/v{version}.json"
    out = [
        f"// Generated from {source}",
        "// by scripts/gen_metadata_types.py: do not edit; re-run it when the schema changes.",
        "",
        "/** The schema_version this extension writes and reads up to. */",
        f"export const CURRENT_SCHEMA_VERSION = {version};",
        "",
        *interface(PREFIX + "Section", schema),
    ]
    for name, node in schema.get("$defs", {}).items():
        out += ["", *interface(type_name(f"#/$defs/{name}"), node)]
    return "\n".join(out) + "\n"


def render_cases() -> str:
    cases = json.loads(CASES.read_text(encoding="utf-8"))
    # JSON inside a raw template literal: only a backtick or "${" could end or break it.
    text = json.dumps(cases, indent=1, ensure_ascii=False)
    text = text.replace("`", "\\u0060").replace("${", "$\\u007b")
    return "\n".join(
        [
            f"// Generated from {CASES.relative_to(REPO)} by scripts/gen_metadata_types.py: do not",
            "// edit. The Python merge passes the same cases (tests/test_notebook_metadata.py).",
            "",
            "import type { TimebackSection } from '../src/metadata-schema';",
            "",
            "export interface MergeCase {",
            "  name: string;",
            "  existing: unknown;",
            "  ours: TimebackSection;",
            "  expect?: Record<string, unknown>;",
            "  refused?: 'newer';",
            "}",
            "",
            f"export const CASES = JSON.parse(String.raw`{text}`) as MergeCase[];",
            "",
        ]
    )


def rendered() -> dict[Path, str]:
    return {TARGET: render(), CASES_TARGET: render_cases()}


def main(argv: list[str]) -> int:
    files = rendered()
    if argv[1:] == ["--check"]:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text("utf-8") != text]
        for path in stale:
            print(f"{path.relative_to(REPO)} is stale: run python scripts/{Path(__file__).name}")
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__)
        return 2
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
