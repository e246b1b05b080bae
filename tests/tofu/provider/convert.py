#!/usr/bin/env python3
"""Convert a Pulumi bridged-provider schema back into the Terraform resource schema.

kiln's `.tf.json` output is type-checked by `terraform validate` against local
stand-in providers (see kiln_tf_provider.py).  Those providers serve the
*real* providers' resource schemas, which we recover from the Pulumi schemas
that pulumi-terraform-bridge generated from the real Terraform providers:

    ../shared/schemas/pulumi-<name>-schema.json           (resources, types)
    ../shared/schemas/pulumi-<name>-bridge-metadata.json  (Terraform names)

Output: schemas/<name>.json, in the shape of `terraform providers schema -json`
(one provider), plus three extension keys that Terraform does not have:

    "force_new": true            the real attribute is ForceNew / RequiresReplace
    "deprecation_message": "..." the real attribute is Deprecated (with this text)
    "source": {...}              where the schema came from (top level only)

Usage (regenerates the committed files; needs ../shared/schemas):

    python3 tests/tofu/provider/convert.py           # hcloud, digitalocean (+ cloudflare from handmade.py)
    python3 tests/tofu/provider/convert.py --check   # exit 1 if the committed files are stale

(schemas/scaleway.json comes from extract_sdkv2.py.)

How Pulumi names map back (and what is lost) is documented in README.md.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS_OUT = HERE / "schemas"

# provider key -> (registry address, version of the real provider the Pulumi
# schema was generated from, Pulumi schema source)
PROVIDERS = {
    "hcloud": {
        "address": "hetznercloud/hcloud",
        # pulumi/pulumi-hcloud commit cea1a4928ad75a40dc6515c5e1c46a11626b3129
        # (provider/cmd/pulumi-resource-hcloud/schema.json is byte-identical to
        # shared/schemas/pulumi-hcloud-schema.json); its provider/go.mod pins
        # github.com/hetznercloud/terraform-provider-hcloud v1.66.1.
        "version": "1.66.1",
        "pulumi_commit": "pulumi/pulumi-hcloud@cea1a4928ad75a40dc6515c5e1c46a11626b3129",
    },
    "digitalocean": {
        "address": "digitalocean/digitalocean",
        # pulumi/pulumi-digitalocean commit 0825b75e5e5e319d7e8a72c2fe3741304e7a5e11
        # "Upgrade terraform-provider-digitalocean to v2.96.0" (schema.json is
        # byte-identical to shared/schemas/pulumi-digitalocean-schema.json).
        "version": "2.96.0",
        "pulumi_commit": "pulumi/pulumi-digitalocean@0825b75e5e5e319d7e8a72c2fe3741304e7a5e11",
    },
}

# Pulumi's autonaming (prov.SetAutonaming) turns every Required `name` string
# into an optional input that is always present as output, which looks exactly
# like a real Optional+Computed `name`.  These are the resources whose `name`
# really is Optional+Computed in the Terraform provider (checked against the
# providers' Go sources at the pinned tags); every other such `name` is
# Required.
# The data sources kiln reads (the lookup of a DNS zone that exists already), converted
# from the Pulumi functions (`getZone`, `getDomain`) the same way as resources.
DATA_SOURCES = {
    "hcloud": ["hcloud_zone"],
    "digitalocean": ["digitalocean_domain"],
}

NAME_REALLY_OPTIONAL = {
    "hcloud_floating_ip",
    "hcloud_storage_box_subaccount",
}

PRIMITIVES = {"string": "string", "integer": "number", "number": "number", "boolean": "bool"}


def camel_to_snake(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def singulars(name: str) -> list[str]:
    out = []
    if name.endswith("ies"):
        out.append(name[:-3] + "y")
    if name.endswith("es"):
        out.append(name[:-2])
    if name.endswith("s"):
        out.append(name[:-1])
    return out


_SPAN = re.compile(r'<span pulumi-lang-nodejs=[^>]*?pulumi-lang-hcl="([^"]*)"[^>]*>.*?</span>', re.S)


def clean_text(text: str) -> str:
    """Pulumi's per-language name markup -> the Terraform (HCL) spelling."""
    return _SPAN.sub(lambda m: m.group(1), text).strip()


def sub_fields(meta: dict | None) -> dict:
    """Metadata for the fields one level down (list elements or a single object)."""
    if not meta:
        return {}
    return (meta.get("elem") or {}).get("fields") or meta.get("fields") or {}


class Converter:
    def __init__(self, key: str, schema_path: Path, meta_path: Path):
        self.key = key
        self.schema = json.loads(schema_path.read_text())
        self.meta = json.loads(meta_path.read_text())
        renames = self.meta.get("renames", {})
        self.renamed = renames.get("renamedProperties", {})
        self.renamed_config = renames.get("renamedConfigProperties", {})
        self.res_names = dict(renames.get("resources", {}))
        aliasing = self.meta.get("auto-aliasing", {}).get("resources", {})
        self.fields_meta = {}
        for tf_name, info in aliasing.items():
            self.res_names.setdefault(info["current"], tf_name)
            self.fields_meta[tf_name] = info.get("fields", {})
        for tf_name, info in (self.meta.get("auto-settings", {}) or {}).get("resources", {}).items():
            for field, mio in (info.get("maxItemsOneOverrides") or {}).items():
                # Pulumi kept these as arrays although Terraform has MaxItems 1.
                self.fields_meta.setdefault(tf_name, {}).setdefault(field, {})["maxItemsOne"] = False
        self.fn_names = dict(renames.get("functions", {}))
        self.fn_fields = {}
        for tf_name, info in self.meta.get("auto-aliasing", {}).get("datasources", {}).items():
            self.fn_names.setdefault(info["current"], tf_name)
            self.fn_fields[tf_name] = info.get("fields", {})
        self.mux = (self.meta.get("mux") or {}).get("resources", {})
        self.fn_mux = (self.meta.get("mux") or {}).get("functions", {})
        self.fixups = (self.meta.get("default-resource-schema-fixups") or {}).get("resources", {})
        self.lossy: list[str] = []

    # -- names ---------------------------------------------------------------
    def tf_name(self, token: str | None, pname: str, fields: dict) -> str:
        if token and pname in self.renamed.get(token, {}):
            return self.renamed[token][pname]
        sn = camel_to_snake(pname)
        if sn in fields or not fields:
            if sn not in fields:
                for cand in singulars(sn):
                    if cand in fields:
                        return cand
            return sn
        for cand in singulars(sn):
            if cand in fields:
                return cand
        return sn

    # -- types ---------------------------------------------------------------
    def resolve(self, spec: dict) -> tuple[str, dict | None]:
        """('primitive', cty) | ('array', item) | ('map', item) | ('object', type_token)."""
        ref = spec.get("$ref")
        if ref and ref.startswith("#/types/"):
            tok = ref[len("#/types/"):]
            t = self.schema["types"][tok]
            if "enum" in t:
                return "primitive", {"cty": PRIMITIVES[t["type"]]}
            return "object", {"token": tok}
        if ref:
            if ref.endswith("/Any") or ref.endswith("Json"):
                return "primitive", {"cty": "dynamic"}
            if "Asset" in ref or "Archive" in ref:
                return "primitive", {"cty": "string"}
            raise ValueError(f"unknown $ref {ref}")
        ty = spec.get("type")
        if ty in PRIMITIVES:
            return "primitive", {"cty": PRIMITIVES[ty]}
        if ty == "array":
            return "array", spec["items"]
        if ty == "object":
            return "map", spec.get("additionalProperties") or {"type": "string"}
        if "oneOf" in spec:
            return self.resolve(spec["oneOf"][0])
        raise ValueError(f"cannot map {spec}")

    def cty(self, spec: dict, fields: dict) -> object:
        """cty type of a value (used for attributes, including object-typed ones)."""
        kind, info = self.resolve(spec)
        if kind == "primitive":
            return info["cty"]
        if kind == "array":
            return ["list", self.cty(info, fields)]
        if kind == "map":
            return ["map", self.cty(info, fields)]
        tok = info["token"]
        t = self.schema["types"][tok]
        attrs = {}
        for pname, pspec in sorted(t.get("properties", {}).items()):
            attrs[self.tf_name(tok, pname, fields)] = self.cty(pspec, sub_fields(fields.get(self.tf_name(tok, pname, fields))))
        return ["object", attrs]

    # -- blocks --------------------------------------------------------------
    def block_from_props(
        self,
        token: str | None,
        props: dict,
        required: set[str],
        out_required: set[str],
        inputs: set[str],
        fields: dict,
        framework: bool,
        where: str,
    ) -> dict:
        attributes: dict = {}
        block_types: dict = {}
        for pname in sorted(props):
            spec = props[pname]
            name = self.tf_name(token, pname, fields)
            fmeta = fields.get(name) or {}
            is_input = pname in inputs
            req = pname in required
            computed = (not is_input) or (pname in out_required and not req)
            flags = {}
            if req:
                flags["required"] = True
            elif is_input:
                flags["optional"] = True
            if computed and not req:
                flags["computed"] = True
            if spec.get("secret"):
                flags["sensitive"] = True
            if spec.get("willReplaceOnChanges"):
                flags["force_new"] = True
            if spec.get("deprecationMessage"):
                flags["deprecated"] = True
                flags["deprecation_message"] = clean_text(spec["deprecationMessage"])

            kind, info = self.resolve(spec)
            max_one = bool(fmeta.get("maxItemsOne"))
            elem_spec = None
            if kind == "object":
                elem_spec, single = spec, True
            elif kind == "array" and self.resolve(info)[0] == "object":
                elem_spec, single = info, False
            if elem_spec is not None and is_input:
                tok = self.resolve(elem_spec)[1]["token"]
                t = self.schema["types"][tok]
                inner = self.block_from_props(
                    tok,
                    t.get("properties", {}),
                    set(t.get("required", [])),
                    set(((t.get("language") or {}).get("nodejs") or {}).get("requiredOutputs", [])),
                    set(t.get("properties", {})),
                    sub_fields(fmeta),
                    framework,
                    f"{where}.{name}",
                )
                if framework:
                    # terraform-plugin-framework resources: nested *attributes*
                    # (hcloud's and Cloudflare's framework resources use no blocks).
                    nested = {"nesting_mode": "single" if single else "list", **inner}
                    a = {"nested_type": nested, **flags}
                    a.pop("force_new", None)
                    if spec.get("willReplaceOnChanges"):
                        a["force_new"] = True
                    attributes[name] = a
                else:
                    # SDKv2: a configurable object is a nested block.
                    bt = {"nesting_mode": "list", "block": inner}
                    if single or max_one:
                        bt["max_items"] = 1
                    if req:
                        bt["min_items"] = 1
                    if spec.get("willReplaceOnChanges"):
                        bt["force_new"] = True
                    if spec.get("deprecationMessage"):
                        bt["deprecated"] = True
                        bt["deprecation_message"] = clean_text(spec["deprecationMessage"])
                    block_types[name] = bt
                continue

            ty = self.cty(spec, sub_fields(fmeta))
            if kind == "object" and not framework:
                # computed-only object: an SDKv2 list "block" (MaxItems 1) that
                # Terraform sees as an attribute of type list(object)
                ty = ["list", ty]
            elif max_one and kind != "array":
                # Pulumi flattened a MaxItems=1 list into its element.
                ty = ["list", ty]
            attributes[name] = {"type": ty, **flags}
        out = {"attributes": attributes}
        if block_types:
            out["block_types"] = block_types
        return out

    def resource(self, token: str, res: dict) -> tuple[str, dict]:
        tf_type = self.res_names[token]
        fields = self.fields_meta.get(tf_type, {})
        framework = self.mux.get(token) == 1
        inputs = res.get("inputProperties", {})
        outputs = res.get("properties", {})
        props = {**outputs, **inputs}
        # ForceNew / secret / deprecation live on the input spec; keep output
        # specs only for computed-only properties.
        required = set(res.get("requiredInputs", []))
        out_required = set(res.get("required", []))
        if (
            "name" in inputs
            and "name" not in required
            and "name" in out_required
            and tf_type not in NAME_REALLY_OPTIONAL
            and self.resolve(inputs["name"])[0] == "primitive"
        ):
            required.add("name")
        block = self.block_from_props(token, props, required, out_required, set(inputs), fields, framework, tf_type)
        fix = self.fixups.get(tf_type, {})
        if not (fix.get("computeID") or {}).get("kind") == "missing":
            id_type = "string"
            if ((fix.get("fields") or {}).get("id") or {}).get("type") == "string":
                id_type = "number"  # Pulumi had to force the Int64 `id` to string
            if "id" not in block["attributes"]:
                block["attributes"]["id"] = {"type": id_type, "computed": True}
                if not framework:
                    block["attributes"]["id"]["optional"] = True  # SDKv2's implicit id
        return tf_type, {"version": 0, "block": block}

    def data_source(self, token: str, fn: dict) -> tuple[str, dict]:
        """A Pulumi function back to the Terraform data source: its inputs are the
        arguments (Required as Pulumi has them, otherwise Optional, and Computed too when
        the data source also returns them, as `id` and `name` are), outputs alone are
        Computed."""
        tf_type = self.fn_names[token]
        fields = self.fn_fields.get(tf_type, {})
        framework = self.fn_mux.get(token) == 1
        inputs = (fn.get("inputs") or {}).get("properties", {})
        outputs = (fn.get("outputs") or {}).get("properties", {})
        props = {**outputs, **inputs}
        required = set((fn.get("inputs") or {}).get("required", []))
        block = self.block_from_props(token, props, required, set(outputs), set(inputs), fields, framework, tf_type)
        if not framework:
            # SDKv2's implicit `id` of a data source is Optional+Computed (Pulumi lists it
            # as an output only).
            block["attributes"]["id"] = {"type": "string", "optional": True, "computed": True}
        return tf_type, {"version": 0, "block": block}

    def provider_block(self) -> dict:
        prov = self.schema.get("provider", {})
        props = prov.get("inputProperties", {}) or self.schema.get("config", {}).get("variables", {})
        attrs = {}
        for pname, spec in sorted(props.items()):
            name = self.renamed_config.get(pname) or camel_to_snake(pname)
            kind, info = self.resolve(spec)
            if kind == "object":
                continue  # provider-level nested blocks are not needed by kiln
            a = {"type": self.cty(spec, {}), "optional": True}
            if spec.get("secret"):
                a["sensitive"] = True
            attrs[name] = a
        return {"attributes": attrs}

    def convert(self) -> dict:
        resources = {}
        for token, res in sorted(self.schema["resources"].items()):
            if token not in self.res_names:
                continue  # a Pulumi-only alias of a renamed resource
            name, sch = self.resource(token, res)
            resources[name] = sch
        data_sources = {}
        for token, fn in sorted(self.schema.get("functions", {}).items()):
            if self.fn_names.get(token) in DATA_SOURCES.get(self.key, []):
                name, sch = self.data_source(token, fn)
                data_sources[name] = sch
        missing = set(DATA_SOURCES.get(self.key, [])) - set(data_sources)
        if missing:
            raise SystemExit(f"{self.key}: no Pulumi function for the data sources {sorted(missing)}")
        info = PROVIDERS[self.key]
        return {
            "source": {
                "generated_by": "tests/tofu/provider/convert.py",
                "from": f"shared/schemas/pulumi-{self.key}-schema.json + pulumi-{self.key}-bridge-metadata.json",
                "pulumi_commit": info["pulumi_commit"],
                "terraform_provider": f"{info['address']} v{info['version']}",
            },
            "address": info["address"],
            "version": info["version"],
            "provider": {"version": 0, "block": self.provider_block()},
            "resource_schemas": dict(sorted(resources.items())),
            "data_source_schemas": dict(sorted(data_sources.items())),
        }


def dump(doc: dict) -> str:
    """One resource (and data source) per line: small diffs, still valid JSON."""
    tables = [k for k in ("resource_schemas", "data_source_schemas") if k in doc]
    head = {k: v for k, v in doc.items() if k not in tables}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)},")
    for t, table in enumerate(tables):
        lines.append(f"  {json.dumps(table)}: {{")
        items = list(doc[table].items())
        for i, (k, v) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True, separators=(',', ':'))}{comma}")
        lines.append("  }," if t < len(tables) - 1 else "  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv[1:] if a != "--check"]
    shared = Path(args[0]) if args else HERE.parents[3] / "shared" / "schemas"
    if not shared.is_dir():
        shared = Path("/work/shared/schemas")
    sys.path.insert(0, str(HERE))
    import handmade

    docs = {}
    for key in PROVIDERS:
        conv = Converter(key, shared / f"pulumi-{key}-schema.json", shared / f"pulumi-{key}-bridge-metadata.json")
        docs[key] = (conv.convert(), "")
    docs["cloudflare"] = (handmade.cloudflare(), " (hand-made)")
    stale = 0
    SCHEMAS_OUT.mkdir(exist_ok=True)
    for key, (doc, how) in docs.items():
        out = SCHEMAS_OUT / f"{key}.json"
        text = dump(doc)
        if check:
            if not out.exists() or out.read_text() != text:
                print(f"{key}: schemas/{key}.json is stale; run tests/tofu/provider/convert.py")
                stale += 1
            continue
        out.write_text(text)
        print(f"{key}: {len(doc['resource_schemas'])} resources{how} -> schemas/{key}.json")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
