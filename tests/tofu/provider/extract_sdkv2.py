#!/usr/bin/env python3
"""Extract terraform-plugin-sdk/v2 resource schemas from a provider's Go source.

Used for the providers shared/schemas has no attributes for: Scaleway (only
resource names, in the bridge metadata) and MinIO (aminueza/minio, the
S3-compatible provider kiln creates Hetzner Object Storage buckets with).  It
reads `map[string]*schema.Schema{...}` literals from the Go files of the
provider at the pinned tag and writes schemas/<provider>.json in the same shape
as convert.py's output.  Only what the stand-in provider needs is read: Type, Elem,
Required/Optional/Computed, ForceNew, Sensitive, WriteOnly, MaxItems/MinItems, Deprecated.
Entries that are helper calls (zonal.Schema(), account.ProjectIDSchema(), ...)
are resolved from the table below, transcribed from internal/locality and
internal/services/account at the same tag.

Usage (needs a clone of the provider; not run by tests):

    git clone https://github.com/scaleway/terraform-provider-scaleway
    git -C terraform-provider-scaleway checkout v2.79.0
    python3 tests/tofu/provider/extract_sdkv2.py terraform-provider-scaleway

    git clone https://github.com/aminueza/terraform-provider-minio
    git -C terraform-provider-minio checkout v3.40.1
    python3 tests/tofu/provider/extract_sdkv2.py --provider minio terraform-provider-minio
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = "2.79.0"
MINIO_VERSION = "3.40.1"

# resource type -> (file, regex locating the schema map literal)
RESOURCES = {
    "scaleway_instance_server": ("internal/services/instance/server.go", r"func serverSchema\(\)"),
    "scaleway_instance_ip": ("internal/services/instance/ip.go", r"func ipSchema\(\)"),
    "scaleway_instance_security_group": ("internal/services/instance/security_group.go", r"func securityGroupSchema\(\)"),
    "scaleway_instance_volume": ("internal/services/instance/volume.go", r"func volumeSchema\(\)"),
    "scaleway_instance_private_nic": ("internal/services/instance/private_nic.go", r"func privateNicSchema\(\)"),
    "scaleway_vpc": ("internal/services/vpc/vpc.go", r"func vpcSchema\(\)"),
    "scaleway_vpc_private_network": ("internal/services/vpc/private_network.go", r"func privateNetworkSchema\(\)"),
    "scaleway_rdb_instance": ("internal/services/rdb/instance.go", r"func instanceSchema\(\)"),
    "scaleway_object_bucket": ("internal/services/object/bucket.go", r"func bucketSchema\(\)"),
    "scaleway_iam_ssh_key": ("internal/services/iam/ssh_key.go", r"func sshKeySchema\(\)"),
    "scaleway_ipam_ip": ("internal/services/ipam/ip.go", r"func ipSchema\(\)"),
    "scaleway_vpc_public_gateway": ("internal/services/vpcgw/public_gateway.go", r"func publicGatewaySchema\(\)"),
    "scaleway_vpc_public_gateway_ip": ("internal/services/vpcgw/ip.go", r"func ipSchema\(\)"),
    "scaleway_vpc_gateway_network": ("internal/services/vpcgw/network.go", r"func networkSchema\(\)"),
    "scaleway_rdb_database": ("internal/services/rdb/database.go", r"func databaseSchema\(\)"),
    "scaleway_rdb_user": ("internal/services/rdb/user.go", r"func userSchema\(\)"),
    "scaleway_rdb_privilege": ("internal/services/rdb/privilege.go", r"func privilegeSchema\(\)"),
}

# aminueza/minio v3.40.1: a pure SDKv2 provider (main.go serves minio.Provider).
MINIO_RESOURCES = {
    "minio_s3_bucket": ("minio/resource_minio_s3_bucket.go", r"func resourceMinioBucket\(\)"),
}
MINIO_PROVIDER = ("minio/provider.go", r"func newProvider\(")

S = {"type": "string"}
HELPERS = {
    "zonal.Schema()": {"type": "string", "optional": True, "force_new": True},
    "zonal.ComputedSchema()": {"type": "string", "computed": True},
    "regional.Schema()": {"type": "string", "optional": True, "force_new": True},
    "regional.ComputedSchema()": {"type": "string", "computed": True},
    "account.ProjectIDSchema()": {"type": "string", "optional": True, "computed": True, "force_new": True},
    "account.OrganizationIDSchema()": {"type": "string", "computed": True},
    "account.OrganizationIDOptionalSchema()": {"type": "string", "optional": True, "computed": True},
}

PRIM = {"TypeString": "string", "TypeInt": "number", "TypeFloat": "number", "TypeBool": "bool"}


def skip_literal(src: str, i: int) -> int:
    """If src[i] opens a string/rune/comment, return the index after it, else i."""
    c = src[i]
    if c == '"':
        i += 1
        while src[i] != '"':
            i += 2 if src[i] == "\\" else 1
        return i + 1
    if c == "`":
        return src.index("`", i + 1) + 1
    if c == "'":
        i += 1
        while src[i] != "'":
            i += 2 if src[i] == "\\" else 1
        return i + 1
    if src.startswith("//", i):
        j = src.find("\n", i)
        return len(src) if j < 0 else j
    if src.startswith("/*", i):
        return src.index("*/", i) + 2
    return i


def match_brace(src: str, i: int) -> int:
    """src[i] is an opening bracket; return the index of its match."""
    depth = 0
    while i < len(src):
        j = skip_literal(src, i)
        if j != i:
            i = j
            continue
        c = src[i]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced")


def split_top(body: str) -> list[str]:
    """Split at top-level commas."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(body):
        j = skip_literal(body, i)
        if j != i:
            i = j
            continue
        c = body[i]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return [p.strip() for p in parts if strip_comments(p).strip()]


def strip_comments(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        j = skip_literal(s, i)
        if j != i:
            if not (s.startswith("//", i) or s.startswith("/*", i)):
                out.append(s[i:j])
            i = j
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


MAP_OPEN = "map[string]*schema.Schema{"


class Extractor:
    def __init__(self, root: Path):
        self.root = root
        self.unresolved: list[str] = []

    def func_body(self, pkg_dir: Path, name: str) -> str:
        for f in sorted(pkg_dir.glob("*.go")):
            src = f.read_text()
            m = re.search(rf"func {re.escape(name)}\([^)]*\)[^{{]*\{{", src)
            if m:
                end = match_brace(src, m.end() - 1)
                return src[m.end(): end]
        raise KeyError(name)

    def parse_map(self, src: str, open_idx: int, pkg_dir: Path, where: str) -> dict:
        end = match_brace(src, open_idx)
        body = src[open_idx + 1: end]
        out = {}
        for entry in split_top(body):
            entry = strip_comments(entry).strip()
            m = re.match(r'"([^"]+)"\s*:\s*(.*)$', entry, re.S)
            if not m:
                self.unresolved.append(f"{where}: {entry[:60]!r}")
                continue
            key, val = m.group(1), m.group(2).strip()
            out[key] = self.parse_value(val, pkg_dir, f"{where}.{key}")
        return out

    def parse_value(self, val: str, pkg_dir: Path, where: str) -> dict:
        if val in HELPERS:
            return dict(HELPERS[val])
        if val.startswith("{") or val.startswith("&schema.Schema{") or val.startswith("schema.Schema{"):
            i = val.index("{")
            return self.parse_entry(val[i + 1: match_brace(val, i)], pkg_dir, where)
        m = re.match(r"(\w+)\(\)$", val)
        if m:  # a local function returning *schema.Schema
            body = self.func_body(pkg_dir, m.group(1))
            i = body.index("schema.Schema{") + len("schema.Schema")
            return self.parse_entry(body[i + 1: match_brace(body, i)], pkg_dir, where)
        self.unresolved.append(f"{where}: {val[:60]!r}")
        return {"type": "string", "optional": True, "computed": True}

    def parse_entry(self, body: str, pkg_dir: Path, where: str) -> dict:
        fields = {}
        for part in split_top(body):
            part = strip_comments(part).strip()
            m = re.match(r"(\w+)\s*:\s*(.*)$", part, re.S)
            if m:
                fields[m.group(1)] = m.group(2).strip()
        ty = fields.get("Type", "").replace("schema.", "")
        e: dict = {}
        for flag, key in (("Required", "required"), ("Optional", "optional"), ("Computed", "computed"),
                          ("ForceNew", "force_new"), ("Sensitive", "sensitive"), ("WriteOnly", "write_only")):
            if fields.get(flag) == "true":
                e[key] = True
        if "Deprecated" in fields:
            e["deprecated"] = True
            e["deprecation_message"] = json.loads(fields["Deprecated"]) if fields["Deprecated"].startswith('"') else ""
        for k in ("MaxItems", "MinItems"):
            if k in fields and fields[k].isdigit():
                e[k] = int(fields[k])
        if ty in PRIM:
            e["type"] = PRIM[ty]
            return e
        elem = fields.get("Elem", "")
        if ty in ("TypeList", "TypeSet", "TypeMap"):
            kind = {"TypeList": "list", "TypeSet": "set", "TypeMap": "map"}[ty]
            if MAP_OPEN in elem:
                i = elem.index(MAP_OPEN) + len(MAP_OPEN) - 1
                e["elem_block"] = self.parse_map(elem, i, pkg_dir, where)
                e["kind"] = kind
                return e
            fm = re.match(r"&?schema\.Resource\{", elem)
            if not fm and re.match(r"(\w+)\(\)$", elem):
                body = self.func_body(pkg_dir, elem[:-2])
                if MAP_OPEN in body:
                    i = body.index(MAP_OPEN) + len(MAP_OPEN) - 1
                    e["elem_block"] = self.parse_map(body, i, pkg_dir, where)
                    e["kind"] = kind
                    return e
                sm = re.search(r"schema\.Schema\{", body)
                if sm:
                    elem = body[sm.start():]
            em = re.search(r"Type:\s*schema\.(\w+)", elem)
            inner = PRIM.get(em.group(1), "string") if em else "string"
            e["type"] = [kind, inner]
            return e
        self.unresolved.append(f"{where}: Type {ty!r}")
        e["type"] = "string"
        return e

    def resource(self, file: str, anchor: str) -> dict:
        path = self.root / file
        src = path.read_text()
        m = re.search(anchor, src)
        if not m:
            raise KeyError(f"{file}: {anchor}")
        i = src.index(MAP_OPEN, m.end()) + len(MAP_OPEN) - 1
        return self.parse_map(src, i, path.parent, file)


def to_block(entries: dict) -> dict:
    attrs, blocks = {}, {}
    for name, e in sorted(entries.items()):
        if "elem_block" in e:
            inner = to_block(e["elem_block"])
            if e.get("computed") and not e.get("optional") and not e.get("required"):
                attrs[name] = {"type": [e["kind"], ["object", obj_type(inner)]], "computed": True}
                continue
            bt = {"nesting_mode": "set" if e["kind"] == "set" else "list", "block": inner}
            if e.get("MaxItems"):
                bt["max_items"] = e["MaxItems"]
            if e.get("MinItems") or e.get("required"):
                bt["min_items"] = e.get("MinItems", 1)
            for k in ("force_new", "deprecated", "deprecation_message"):
                if k in e:
                    bt[k] = e[k]
            blocks[name] = bt
            continue
        a = {k: v for k, v in e.items() if k in ("type", "required", "optional", "computed", "force_new",
                                                  "sensitive", "write_only", "deprecated", "deprecation_message")}
        if a.get("required"):
            a.pop("optional", None)
            a.pop("computed", None)
        attrs[name] = a
    out = {"attributes": attrs}
    if blocks:
        out["block_types"] = blocks
    return out


def obj_type(block: dict) -> dict:
    t = {k: v["type"] for k, v in block["attributes"].items()}
    for k, bt in block.get("block_types", {}).items():
        t[k] = [bt["nesting_mode"], ["object", obj_type(bt["block"])]]
    return t


def scaleway_doc(ex: Extractor) -> dict:
    return {
        "source": {
            "extracted_by": "tests/tofu/provider/extract_sdkv2.py",
            "from": f"scaleway/terraform-provider-scaleway v{VERSION} (Go source, SDKv2 schemas)",
            "terraform_provider": f"scaleway/scaleway v{VERSION}",
            "note": "only the resources kiln emits; the names of all others are in shared/schemas/pulumi-scaleway-bridge-metadata.json",
        },
        "address": "scaleway/scaleway",
        "version": VERSION,
        # provider block: internal/provider/provider.go (SDKv2 half of the mux)
        "provider": {"version": 0, "block": {"attributes": {
            "access_key": {"type": "string", "optional": True},
            "secret_key": {"type": "string", "optional": True, "sensitive": True},
            "profile": {"type": "string", "optional": True},
            "project_id": {"type": "string", "optional": True},
            "organization_id": {"type": "string", "optional": True},
            "region": {"type": "string", "optional": True},
            "zone": {"type": "string", "optional": True},
            "api_url": {"type": "string", "optional": True},
        }}},
        "resource_schemas": resources_of(ex, RESOURCES),
    }


def minio_doc(ex: Extractor) -> dict:
    # The provider block is extracted like a resource. `minio_server` is Required with
    # an environment DefaultFunc: the SDK reports it Required while MINIO_ENDPOINT is unset,
    # as here.
    provider = to_block(ex.resource(*MINIO_PROVIDER))
    return {
        "source": {
            "extracted_by": "tests/tofu/provider/extract_sdkv2.py --provider minio",
            "from": f"aminueza/terraform-provider-minio v{MINIO_VERSION} (Go source, SDKv2 schemas)",
            "terraform_provider": f"aminueza/minio v{MINIO_VERSION}",
            "note": "only the resources kiln emits (Hetzner Object Storage buckets)",
        },
        "address": "aminueza/minio",
        "version": MINIO_VERSION,
        "provider": {"version": 0, "block": provider},
        "resource_schemas": resources_of(ex, MINIO_RESOURCES),
    }


def resources_of(ex: Extractor, table: dict) -> dict:
    resources = {}
    for name, (file, anchor) in table.items():
        block = to_block(ex.resource(file, anchor))
        block["attributes"].setdefault("id", {"type": "string", "optional": True, "computed": True})
        resources[name] = {"version": 0, "block": block}
    return resources


def main(argv: list[str]) -> int:
    args = argv[1:]
    key = "scaleway"
    if args[:1] == ["--provider"] and len(args) >= 2:
        key, args = args[1], args[2:]
    if len(args) != 1 or key not in ("scaleway", "minio"):
        print(__doc__, file=sys.stderr)
        return 64
    ex = Extractor(Path(args[0]))
    doc = scaleway_doc(ex) if key == "scaleway" else minio_doc(ex)
    for u in ex.unresolved:
        print(f"unresolved: {u}", file=sys.stderr)
    sys.path.insert(0, str(HERE))
    from convert import dump

    (HERE / "schemas" / f"{key}.json").write_text(dump(doc))
    print(f"{key}: {len(doc['resource_schemas'])} resources -> schemas/{key}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
