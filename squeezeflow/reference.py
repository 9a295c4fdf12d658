"""The field reference of the three YAML kinds (docs/reference/*.md), rendered from the same JSON Schemas the editors
use (squeezeflow.yaml_schemas), so the documentation cannot drift from what a run accepts. The shipped pages are
checked against what this renders (tests/squeezeflow/test_reference.py); regenerate with

    .venv/bin/python -m squeezeflow.reference
"""

from __future__ import annotations

import json
from pathlib import Path

from squeezeflow.yaml_schemas import KINDS, schema

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference"
PAGES = {"params": ("params.yaml", "The workspace's parameters: data, teacher, recipe choice, export, registry, "
                    "notifications. `--set KEY=VALUE` overrides any of them for one run."),
         "target": ("Device target", "One YAML file per hardware target in `device_targets/`: its runtime, how the "
                    "file is built and measured, the budgets its gate enforces, and how it is promoted."),
         "recipe": ("Recipe", "A compression recipe in `recipes/`: technique steps in order, then the recovery "
                    "fine-tuning.")}


class _Page:
    def __init__(self, root: dict):
        self.defs = root.get("$defs", {})
        self.sections: list[tuple[str, str, list[str]]] = []  # (heading, description, table rows)

    def resolve(self, node: dict) -> dict:
        while "$ref" in node:
            node = {**self.defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def model_of(self, node: dict) -> dict | None:
        """The object schema (with properties) a field holds, looking through `X | None`."""
        node = self.resolve(node)
        if "properties" in node:
            return node
        options = [self.resolve(o) for o in node.get("anyOf", [])]
        models = [o for o in options if "properties" in o]
        return models[0] if len(models) == 1 and len(options) == 2 else None

    def variants(self, node: dict) -> tuple[str, list[tuple[str, dict]]] | None:
        """A tagged union (builders, techniques): the tag and (name, object schema) per variant."""
        node = self.resolve(node)
        if node.get("type") == "array":
            node = self.resolve(node.get("items", {}))
        if "discriminator" not in node:
            return None
        tag = node["discriminator"]["propertyName"]
        return tag, [(name, self.resolve({"$ref": ref})) for name, ref in sorted(node["discriminator"]["mapping"]
                                                                               .items())]

    def type_of(self, node: dict) -> str:
        node = self.resolve(node)
        if "const" in node:
            return f"`{json.dumps(node['const'])}`"
        if "enum" in node:
            return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
        if "anyOf" in node or "oneOf" in node:
            return " or ".join(self.type_of(o) for o in node.get("anyOf", node.get("oneOf")))
        if "properties" in node:
            return "mapping"
        kind = node.get("type", "any")
        if kind == "array" and "prefixItems" in node:
            return "[" + ", ".join(self.type_of(i) for i in node["prefixItems"]) + "]"
        if kind == "array":
            return f"list of {self.type_of(node.get('items', {}))}"
        if kind == "object" and isinstance(node.get("additionalProperties"), dict):
            return f"mapping of {self.type_of(node['additionalProperties'])}"
        return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null",
                "object": "mapping"}.get(kind, kind)

    @staticmethod
    def limits(node: dict) -> str:
        found = []
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
                          ("minLength", "length >="), ("minItems", "items >="), ("pattern", "matches")):
            if key in node:
                found.append(f"{sign} `{node[key]}`")
        for option in node.get("anyOf", []):
            inner = _Page.limits(option)
            if inner:
                found.append(inner)
        return ", ".join(found)

    def row(self, path: str, node: dict, required: bool, link: str = "", kind: str = "") -> str:
        node_r = self.resolve(node)
        if required:
            default = "required"
        elif "default" in node:
            value = node["default"]
            default = "see below" if isinstance(value, dict) and value else f"`{json.dumps(value)}`"
        else:
            default = ""
        kind = kind or self.type_of(node)
        kind = f"[{kind}](#{link})" if link else kind
        about = (node.get("description") or node_r.get("description") or "").replace("\n", " ").replace("|", "\\|")
        limits = self.limits(node_r)
        return f"| `{path}` | {kind.replace('|', chr(92) + '|')} | {default} | {limits} | {about} |"

    def walk(self, obj: dict, prefix: str, heading: str, about: str = "", skip: str = "", context: str = "") -> None:
        """A table of `obj`'s fields, then a section per nested mapping (`context`: the variant it belongs to)."""
        rows, later = [], []
        required = set(obj.get("required", []))
        for name, field in sorted(obj.get("properties", {}).items()):
            if name == skip:
                continue
            path = f"{prefix}{name}"
            union = self.variants(field)
            model = None if union else self.model_of(field)
            if union:
                tag, options = union
                path += "[]" if self.resolve(field).get("type") == "array" else ""
                rows.append(self.row(path.removesuffix("[]"), field, name in required, anchor(f"`{path}`"),
                                     kind=f"{'list of ' if path.endswith('[]') else ''}mapping by `{tag}`"))
                later.append(lambda p=path, t=tag, o=options: self.union(p, t, o))
            elif model is not None:
                sub = f"`{path}`" + (f" ({context})" if context else "")
                rows.append(self.row(path, field, name in required, anchor(sub)))
                later.append(lambda p=path, m=model, h=sub: self.walk(m, p + ".", h, m.get("description", ""),
                                                                      context=context))
            else:
                rows.append(self.row(path, field, name in required))
        self.sections.append((heading, about, rows))
        for section in later:
            section()

    def union(self, path: str, tag: str, options: list[tuple[str, dict]]) -> None:
        names = ", ".join(f"[`{n}`](#{anchor(f'`{path}` {n}')})" for n, _ in options)
        values = ", ".join(f"`{json.dumps(n)}`" for n, _ in options)
        self.sections.append((f"`{path}`", f"`{tag}` picks one of: {names}. Each takes its own fields:",
                              [f"| `{path}.{tag}` | one of {values} |  |  | which of the mappings below this is |"]))
        for name, option in options:
            self.walk(option, f"{path}.", f"`{path}` {name}", f"`{tag}: {name}`. " + option.get("description", ""),
                      skip=tag, context=f"{tag}: {name}")


def anchor(heading: str) -> str:
    """MkDocs' (Python-Markdown toc) id for a heading: lower case, punctuation dropped, spaces as dashes."""
    text = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return "-".join(text.split())


def render(kind: str) -> str:
    root = schema(kind)
    title, intro = PAGES[kind]
    page = _Page(root)
    page.walk(root, "", "Top level")
    out = [f"# {title}", "", intro, "",
           f"Generated from the pydantic models (`python -m squeezeflow.reference`); editors validate the same fields "
           f"with `squeezeflow/schemas/{kind}.schema.json`. Unknown keys are rejected.", ""]
    for heading, about, rows in page.sections:
        out += [f"## {heading}", ""]
        if about:
            out += [about.replace("\n", " "), ""]
        if rows:
            out += ["| field | type | default | allowed | description |", "|---|---|---|---|---|", *rows, ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    from squeezeflow.io import write_text

    for kind in KINDS:
        write_text(DOCS / f"{kind}.md", render(kind))
        print(DOCS / f"{kind}.md")


if __name__ == "__main__":
    main()
