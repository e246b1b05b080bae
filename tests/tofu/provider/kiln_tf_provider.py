#!/usr/bin/env python3
"""Offline stand-in for real Terraform providers, for type-checking kiln's output.

One program serves any of the providers whose schemas live in ./schemas/
(hcloud, digitalocean, cloudflare, scaleway, minio), chosen by the first argument or,
failing that, by the executable's name (terraform-provider-<type>_v<version>).
It speaks Terraform plugin protocol 6 through the `tf` package (PyPI tf==1.2.0,
which brings the generated tfplugin6 stubs and the go-plugin handshake with
AutoMTLS); the resource logic below works directly on msgpack values so that
every schema feature the real providers use (nested blocks in list mode, nested
attributes, object and dynamic types) can be served.

What it does, per RPC:
  GetProviderSchema       the real provider's resource schemas (schemas/*.json)
  ValidateProviderConfig  accepts anything the schema allows
  ValidateResourceConfig  warns for deprecated arguments (as the SDK does);
                          terraform itself checks names, types, required, blocks
  ConfigureProvider       accepts (no API is called, ever)
  PlanResourceChange      computed values unknown on create; RequiresReplace for
                          changed ForceNew attributes (so plans show
                          "# forces replacement")
  ApplyResourceChange     fills unknowns deterministically (ids are numeric
                          strings hashed from the values; addresses are taken
                          from the documentation ranges 192.0.2.0/24 and
                          2001:db8::/32)
  ReadResource            returns the state as it is
  UpgradeResourceState    passes the stored JSON through
  ImportResourceState     error
  (KILN_TEST_CLOUD=DIR: hcloud servers boot lab VMs, volumes are disk images, see
   test_cloud.py — a stand-in for Hetzner Cloud)
  ReadDataSource          the data sources whose schemas are served
                          (data_source_schemas: hcloud_zone, digitalocean_domain):
                          the configured arguments, computed attributes filled
                          deterministically like an applied resource's. It proves
                          the schema, the references and the plan's shape; it
                          cannot prove that the object looked up exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import msgpack
from msgpack.ext import ExtType

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_cloud  # noqa: E402  (the test cloud: only with KILN_TEST_CLOUD=DIR, hcloud only)

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = Path(os.environ.get("KILN_TF_PROVIDER_SCHEMAS", HERE / "schemas"))


# --------------------------------------------------------------------------
# values: msgpack as cty encodes it (unknown = extension type 0)
class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()


def _ext_hook(code, data):
    if code == 0:
        return UNKNOWN
    return ExtType(code, data)


def _default(obj):
    if obj is UNKNOWN:
        return ExtType(0, b"")
    raise TypeError(f"cannot encode {obj!r}")


def decode(dv) -> object:
    if dv is None:
        return None
    if dv.msgpack:
        return msgpack.unpackb(dv.msgpack, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    if dv.json:
        return json.loads(dv.json)
    return None


def encode(value) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=False)


# --------------------------------------------------------------------------
# schema helpers (schemas/*.json are in the shape of `terraform providers schema -json`)
def attrs_of(block: dict) -> dict:
    return block.get("attributes", {}) or {}


def blocks_of(block: dict) -> dict:
    return block.get("block_types", {}) or {}


def nested_block(attr: dict) -> dict:
    """Treat a nested attribute's object like a block."""
    return {"attributes": attr["nested_type"]["attributes"]}


def has_unknown(v) -> bool:
    if v is UNKNOWN:
        return True
    if isinstance(v, list):
        return any(has_unknown(x) for x in v)
    if isinstance(v, dict):
        return any(has_unknown(x) for x in v.values())
    return False


def strip_unknown(v):
    if v is UNKNOWN:
        return "<unknown>"
    if isinstance(v, list):
        return [strip_unknown(x) for x in v]
    if isinstance(v, dict):
        return {k: strip_unknown(x) for k, x in sorted(v.items())}
    if isinstance(v, ExtType):
        return v.data.hex()
    if isinstance(v, bytes):
        return v.hex()
    return v


# -- plan --------------------------------------------------------------------
def without_write_only(block: dict, value):
    """`value` with the block's write-only attributes null: a provider never returns them
    (Terraform refuses a planned or new state holding one), so they never reach the state."""
    if not isinstance(value, dict):
        return value
    wo = [k for k, a in attrs_of(block).items() if a.get("write_only")]
    return {k: (None if k in wo else v) for k, v in value.items()} if wo else value


def plan_create(block: dict, value: dict | None) -> dict | None:
    """Proposed new state -> planned state for a create: computed nulls become unknown."""
    if value is None or value is UNKNOWN:
        return value
    out = dict(value)
    for name, a in attrs_of(block).items():
        v = out.get(name)
        if v is None:
            if a.get("computed") and a.get("type") != "dynamic":
                out[name] = UNKNOWN
            continue
        if v is UNKNOWN or "nested_type" not in a:
            continue
        mode = a["nested_type"]["nesting_mode"]
        nb = nested_block(a)
        if mode == "single":
            out[name] = plan_create(nb, v)
        elif mode in ("list", "set"):
            out[name] = [plan_create(nb, e) for e in v]
        elif mode == "map":
            out[name] = {k: plan_create(nb, e) for k, e in v.items()}
    for name, bt in blocks_of(block).items():
        v = out.get(name)
        if v is None or v is UNKNOWN:
            continue
        mode = bt["nesting_mode"]
        if mode in ("single", "group"):
            out[name] = plan_create(bt["block"], v)
        elif mode in ("list", "set"):
            out[name] = [plan_create(bt["block"], e) for e in v]
        elif mode == "map":
            out[name] = {k: plan_create(bt["block"], e) for k, e in v.items()}
    return out


def project_force_new(block: dict, value):
    """The part of a value that forces replacement when it changes."""
    if value is None or value is UNKNOWN:
        return value
    out = {}
    for name, a in attrs_of(block).items():
        if a.get("force_new"):
            out[name] = value.get(name)
        elif "nested_type" in a and value.get(name) not in (None, UNKNOWN):
            v = value[name]
            mode = a["nested_type"]["nesting_mode"]
            nb = nested_block(a)
            if mode == "single":
                out[name] = project_force_new(nb, v)
            elif mode in ("list", "set"):
                out[name] = [project_force_new(nb, e) for e in v]
            else:
                out[name] = {k: project_force_new(nb, e) for k, e in v.items()}
    for name, bt in blocks_of(block).items():
        v = value.get(name)
        if bt.get("force_new"):
            out[name] = v
        elif v not in (None, UNKNOWN):
            mode = bt["nesting_mode"]
            if mode in ("single", "group"):
                out[name] = project_force_new(bt["block"], v)
            elif mode in ("list", "set"):
                out[name] = [project_force_new(bt["block"], e) for e in v]
            else:
                out[name] = {k: project_force_new(bt["block"], e) for k, e in v.items()}
    return out


def _norm(v):
    """Comparable form; sets and lists compare as JSON."""
    return json.dumps(strip_unknown(v), sort_keys=True, default=str)


def requires_replace(block: dict, prior: dict, planned: dict) -> list[str]:
    """Top-level attribute/block names whose ForceNew part changed."""
    names = []
    for name in list(attrs_of(block)) + list(blocks_of(block)):
        sub = {"attributes": {k: v for k, v in attrs_of(block).items() if k == name},
               "block_types": {k: v for k, v in blocks_of(block).items() if k == name}}
        a = project_force_new(sub, prior)
        b = project_force_new(sub, planned)
        if not a and not b:
            continue
        if has_unknown(b) and a.get(name) is not None:
            names.append(name)  # unknown after the change: cannot prove it equal
        elif _norm(a) != _norm(b):
            names.append(name)
    return names


# -- apply: deterministic fakes ------------------------------------------------
class Faker:
    def __init__(self, type_name: str, planned: dict):
        self.seed = hashlib.sha256(
            (type_name + "\0" + json.dumps(strip_unknown(planned), sort_keys=True, default=str)).encode()
        ).hexdigest()
        self.type_name = type_name

    def h(self, path: str) -> int:
        return int(hashlib.sha256((self.seed + path).encode()).hexdigest()[:12], 16)

    def number(self, path: str) -> int:
        return 1 + self.h(path) % 9_999_999

    def string(self, name: str, path: str) -> str:
        n = self.h(path)
        low = name.lower()
        if low == "id" or low.endswith("_id") or low.endswith("_uuid") or low == "uuid":
            return str(10_000_000 + n % 89_999_999)
        if low in ("ipv6_network", "ip_range_v6") or (low.startswith("ipv6") and "network" in low):
            return f"2001:db8:{n % 0xFFFF:x}::/64"
        if "ipv6" in low:
            return f"2001:db8::{n % 0xFFFF:x}"
        if low in ("ip_range", "cidr", "subnet") or low.endswith("_cidr") or low.endswith("ip_range"):
            return "192.0.2.0/24"
        if "ipv4" in low or low in ("ip", "address", "ip_address", "gateway", "public_ip", "private_ip"):
            return f"192.0.2.{1 + n % 254}"
        if "mac" in low:
            return "02:00:" + ":".join(f"{(n >> (8 * i)) & 0xFF:02x}" for i in range(4))
        if low.endswith("_at") or low.endswith("_on") or low in ("created", "updated"):
            return "2025-01-01T00:00:00Z"
        if low == "urn":
            return f"do:{self.type_name.split('_', 1)[-1]}:{10_000_000 + n % 89_999_999}"
        if low == "status" or low == "state":
            return "running"
        if low in ("fqdn", "hostname", "domain", "endpoint", "bucket_domain_name"):
            return f"fake-{n % 0xFFFFFF:06x}.example.com"
        return f"fake-{name}-{n % 0xFFFFFF:06x}"

    def value(self, name: str, ty, path: str):
        if ty == "string":
            return self.string(name, path)
        if ty == "number":
            return self.number(path)
        if ty == "bool":
            return False
        if ty == "dynamic":
            return None
        if isinstance(ty, list):
            kind = ty[0]
            if kind in ("list", "set", "tuple"):
                return []
            if kind == "map":
                return {}
            if kind == "object":
                return {k: self.value(k, t, f"{path}.{k}") for k, t in ty[1].items()}
        return None

    def fill_attr(self, name: str, a: dict, v, path: str):
        if "nested_type" in a:
            nb = nested_block(a)
            mode = a["nested_type"]["nesting_mode"]
            if v is UNKNOWN:
                if mode == "single":
                    return self.fill_block(nb, {}, path, fill_optional_computed=True)
                return [] if mode in ("list", "set") else {}
            if v is None:
                return None
            if mode == "single":
                return self.fill_block(nb, v, path)
            if mode in ("list", "set"):
                return [self.fill_block(nb, e, f"{path}[{i}]") for i, e in enumerate(v)]
            return {k: self.fill_block(nb, e, f"{path}[{k}]") for k, e in v.items()}
        if v is UNKNOWN:
            return self.value(name, a.get("type"), path)
        return self.fill_unknown_in(name, a.get("type"), v, path)

    def fill_unknown_in(self, name, ty, v, path):
        """A known collection may still hold unknown elements."""
        if v is UNKNOWN:
            return self.value(name, ty, path)
        if isinstance(v, list) and isinstance(ty, list) and ty[0] in ("list", "set"):
            return [self.fill_unknown_in(name, ty[1], e, f"{path}[{i}]") for i, e in enumerate(v)]
        if isinstance(v, dict) and isinstance(ty, list) and ty[0] == "map":
            return {k: self.fill_unknown_in(name, ty[1], e, f"{path}[{k}]") for k, e in v.items()}
        if isinstance(v, dict) and isinstance(ty, list) and ty[0] == "object":
            return {k: self.fill_unknown_in(k, ty[1].get(k), e, f"{path}.{k}") for k, e in v.items()}
        return v

    def fill_block(self, block: dict, value, path: str, fill_optional_computed: bool = False):
        if value is None:
            return None
        out = dict(value)
        for name, a in attrs_of(block).items():
            v = out.get(name, UNKNOWN if (fill_optional_computed and a.get("computed")) else None)
            out[name] = self.fill_attr(name, a, v, f"{path}.{name}")
        for name, bt in blocks_of(block).items():
            v = out.get(name)
            mode = bt["nesting_mode"]
            if v is None or v is UNKNOWN:
                out[name] = None if mode in ("single", "group") else ([] if mode != "map" else {})
                if v is None and name in value:
                    out[name] = v
                continue
            if mode in ("single", "group"):
                out[name] = self.fill_block(bt["block"], v, f"{path}.{name}")
            elif mode in ("list", "set"):
                out[name] = [self.fill_block(bt["block"], e, f"{path}.{name}[{i}]") for i, e in enumerate(v)]
            else:
                out[name] = {k: self.fill_block(bt["block"], e, f"{path}.{name}[{k}]") for k, e in v.items()}
        return out


# -- validation: deprecations ------------------------------------------------------
def deprecations(block: dict, value, path: list) -> list[tuple[list, str, str]]:
    out = []
    if not isinstance(value, dict):
        return out
    for name, a in attrs_of(block).items():
        v = value.get(name)
        if v is None:
            continue
        if a.get("deprecated"):
            out.append((path + [name], name, a.get("deprecation_message", "")))
        if "nested_type" in a and v is not UNKNOWN:
            nb = nested_block(a)
            mode = a["nested_type"]["nesting_mode"]
            elems = [v] if mode == "single" else (list(v.values()) if isinstance(v, dict) else v)
            for i, e in enumerate(elems):
                out += deprecations(nb, e, path + [name] + ([] if mode == "single" else [i]))
    for name, bt in blocks_of(block).items():
        v = value.get(name)
        if v is None or v is UNKNOWN or v == [] or v == {}:
            continue
        if bt.get("deprecated"):
            out.append((path + [name], name, bt.get("deprecation_message", "")))
        mode = bt["nesting_mode"]
        elems = [v] if mode in ("single", "group") else (list(v.values()) if isinstance(v, dict) else v)
        for i, e in enumerate(elems):
            out += deprecations(bt["block"], e, path + [name] + ([] if mode in ("single", "group") else [i]))
    return out


# --------------------------------------------------------------------------
def load_schema(key: str) -> dict:
    path = SCHEMA_DIR / f"{key}.json"
    if not path.exists():
        known = sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))
        raise SystemExit(f"kiln_tf_provider: no schema {path} (known: {', '.join(known)})")
    return json.loads(path.read_text())


def provider_key(argv: list[str]) -> str:
    if len(argv) > 1 and not argv[1].startswith("-"):
        return argv[1]
    base = Path(argv[0]).name
    if base.startswith("terraform-provider-"):
        return base[len("terraform-provider-"):].split("_v")[0]
    raise SystemExit("usage: kiln_tf_provider.py PROVIDER (hcloud|digitalocean|cloudflare|scaleway|minio)")


def make_servicer(doc: dict):
    from tf.gen import tfplugin_pb2 as pb
    from tf.gen import tfplugin_pb2_grpc as rpc

    resources: dict = doc["resource_schemas"]
    data_sources: dict = doc.get("data_source_schemas", {})

    def ty_bytes(t) -> bytes:
        return json.dumps(t, separators=(",", ":")).encode()

    attr_nest = {"single": pb.Schema.Object.SINGLE, "list": pb.Schema.Object.LIST,
                 "set": pb.Schema.Object.SET, "map": pb.Schema.Object.MAP}
    block_nest = {"single": pb.Schema.NestedBlock.SINGLE, "list": pb.Schema.NestedBlock.LIST,
                  "set": pb.Schema.NestedBlock.SET, "map": pb.Schema.NestedBlock.MAP,
                  "group": pb.Schema.NestedBlock.GROUP}

    def pb_attr(name: str, a: dict):
        kw = dict(
            name=name,
            required=bool(a.get("required")),
            optional=bool(a.get("optional")),
            computed=bool(a.get("computed")),
            sensitive=bool(a.get("sensitive")),
            deprecated=bool(a.get("deprecated")),
            description=a.get("description", ""),
        )
        if "nested_type" in a:
            nt = a["nested_type"]
            kw["nested_type"] = pb.Schema.Object(
                attributes=[pb_attr(k, v) for k, v in sorted(nt["attributes"].items())],
                nesting=attr_nest[nt["nesting_mode"]],
            )
        else:
            kw["type"] = ty_bytes(a["type"])
        attr = pb.Schema.Attribute(**kw)
        if a.get("write_only"):
            # `write_only = 11` (tfplugin6.proto since protocol 6.8) is newer than tf==1.2.0's
            # generated classes: appended as the raw field (tag 11, varint 1), which protobuf
            # keeps as an unknown field and serialises again, so Terraform sees it.
            attr.ParseFromString(attr.SerializeToString() + b"\x58\x01")
        return attr

    def pb_block(b: dict):
        return pb.Schema.Block(
            attributes=[pb_attr(k, v) for k, v in sorted(attrs_of(b).items())],
            block_types=[
                pb.Schema.NestedBlock(
                    type_name=k,
                    block=pb_block(v["block"]),
                    nesting=block_nest[v["nesting_mode"]],
                    min_items=v.get("min_items", 0),
                    max_items=v.get("max_items", 0),
                )
                for k, v in sorted(blocks_of(b).items())
            ],
            deprecated=bool(b.get("deprecated")),
        )

    def pb_schema(s: dict):
        return pb.Schema(version=s.get("version", 0), block=pb_block(s["block"]))

    def diag_error(summary: str, detail: str = "", path: list | None = None):
        return diag(pb.Diagnostic.ERROR, summary, detail, path)

    def diag(sev, summary: str, detail: str = "", path: list | None = None):
        d = pb.Diagnostic(severity=sev, summary=summary, detail=detail)
        if path:
            steps = []
            for p in path:
                if isinstance(p, int):
                    steps.append(pb.AttributePath.Step(element_key_int=p))
                else:
                    steps.append(pb.AttributePath.Step(attribute_name=p))
            d.attribute.CopyFrom(pb.AttributePath(steps=steps))
        return d

    def unknown_type(type_name: str, what: str = "resource type"):
        return diag_error(
            f"Unsupported {what} {type_name}",
            f"The stand-in provider for {doc['address']} v{doc['version']} has no schema for it.",
        )

    class Servicer(rpc.ProviderServicer):
        _schema_resp = None

        def GetMetadata(self, request, context):
            return pb.GetMetadata.Response(
                server_capabilities=pb.ServerCapabilities(plan_destroy=False, get_provider_schema_optional=False),
                resources=[pb.GetMetadata.ResourceMetadata(type_name=t) for t in sorted(resources)],
                data_sources=[pb.GetMetadata.DataSourceMetadata(type_name=t) for t in sorted(data_sources)],
            )

        def GetProviderSchema(self, request, context):
            if Servicer._schema_resp is None:
                Servicer._schema_resp = pb.GetProviderSchema.Response(
                    provider=pb_schema(doc["provider"]),
                    resource_schemas={t: pb_schema(s) for t, s in resources.items()},
                    data_source_schemas={t: pb_schema(s) for t, s in data_sources.items()},
                    provider_meta=pb.Schema(version=0, block=pb.Schema.Block()),
                    server_capabilities=pb.ServerCapabilities(plan_destroy=False),
                )
            return Servicer._schema_resp

        def ValidateProviderConfig(self, request, context):
            return pb.ValidateProviderConfig.Response()

        def ValidateResourceConfig(self, request, context):
            if request.type_name not in resources:
                return pb.ValidateResourceConfig.Response(diagnostics=[unknown_type(request.type_name)])
            config = decode(request.config)
            diags = [
                diag(pb.Diagnostic.WARNING, "Argument is deprecated", msg or f"{name} is deprecated", path)
                for path, name, msg in deprecations(resources[request.type_name]["block"], config, [])
            ]
            return pb.ValidateResourceConfig.Response(diagnostics=diags)

        def ValidateDataResourceConfig(self, request, context):
            if request.type_name not in data_sources:
                return pb.ValidateDataResourceConfig.Response(diagnostics=[unknown_type(request.type_name, "data source")])
            config = decode(request.config)
            diags = [
                diag(pb.Diagnostic.WARNING, "Argument is deprecated", msg or f"{name} is deprecated", path)
                for path, name, msg in deprecations(data_sources[request.type_name]["block"], config, [])
            ]
            return pb.ValidateDataResourceConfig.Response(diagnostics=diags)

        def ConfigureProvider(self, request, context):
            return pb.ConfigureProvider.Response()

        def UpgradeResourceState(self, request, context):
            if request.raw_state.json:
                return pb.UpgradeResourceState.Response(upgraded_state=pb.DynamicValue(json=request.raw_state.json))
            return pb.UpgradeResourceState.Response(
                diagnostics=[diag_error("Legacy flatmap state is not supported by the stand-in provider")]
            )

        def ReadResource(self, request, context):
            return pb.ReadResource.Response(new_state=request.current_state, private=request.private)

        def PlanResourceChange(self, request, context):
            tn = request.type_name
            if tn not in resources:
                return pb.PlanResourceChange.Response(diagnostics=[unknown_type(tn)])
            block = resources[tn]["block"]
            prior = decode(request.prior_state)
            proposed = decode(request.proposed_new_state)
            if proposed is None:  # destroy
                return pb.PlanResourceChange.Response(planned_state=request.proposed_new_state)
            if prior is None:
                planned = without_write_only(block, plan_create(block, proposed))
                return pb.PlanResourceChange.Response(planned_state=pb.DynamicValue(msgpack=encode(planned)))
            replace = requires_replace(block, prior, proposed)
            return pb.PlanResourceChange.Response(
                planned_state=pb.DynamicValue(msgpack=encode(without_write_only(block, proposed))),
                requires_replace=[pb.AttributePath(steps=[pb.AttributePath.Step(attribute_name=n)]) for n in replace],
                planned_private=request.prior_private,
            )

        def ApplyResourceChange(self, request, context):
            tn = request.type_name
            if tn not in resources:
                return pb.ApplyResourceChange.Response(diagnostics=[unknown_type(tn)])
            planned = decode(request.planned_state)
            cloud = test_cloud.cloud_dir() is not None and doc["address"] == "hetznercloud/hcloud"
            if planned is None:  # destroy
                if cloud:
                    try:
                        test_cloud.apply(tn, decode(request.prior_state), None)
                    except test_cloud.CloudError as e:
                        return pb.ApplyResourceChange.Response(diagnostics=[diag_error(str(e))])
                return pb.ApplyResourceChange.Response(new_state=request.planned_state)
            new = without_write_only(resources[tn]["block"], Faker(tn, planned).fill_block(resources[tn]["block"], planned, tn))
            if cloud:
                try:
                    new = test_cloud.apply(tn, decode(request.prior_state), new)
                except test_cloud.CloudError as e:
                    return pb.ApplyResourceChange.Response(diagnostics=[diag_error(str(e))])
            return pb.ApplyResourceChange.Response(new_state=pb.DynamicValue(msgpack=encode(new)), private=b"")

        def ImportResourceState(self, request, context):
            return pb.ImportResourceState.Response(
                diagnostics=[diag_error("Import is not supported by the stand-in provider")]
            )

        def MoveResourceState(self, request, context):
            return pb.MoveResourceState.Response(
                diagnostics=[diag_error("Moving state is not supported by the stand-in provider")]
            )

        def ReadDataSource(self, request, context):
            # What the real provider would find is unknowable offline: the configured
            # arguments come back as they are, every computed attribute left null is filled
            # like an applied resource's (same inputs, same values).
            tn = request.type_name
            if tn not in data_sources:
                return pb.ReadDataSource.Response(diagnostics=[unknown_type(tn, "data source")])
            block = data_sources[tn]["block"]
            config = decode(request.config)
            state = Faker("data." + tn, config).fill_block(block, plan_create(block, config), tn)
            return pb.ReadDataSource.Response(state=pb.DynamicValue(msgpack=encode(state)))

        def GetFunctions(self, request, context):
            return pb.GetFunctions.Response()

        def StopProvider(self, request, context):
            return pb.StopProvider.Response()

    return Servicer


class _App:
    """What tf.runner.run_provider needs from a provider object."""

    def __init__(self, doc: dict):
        self.doc = doc

    def full_name(self) -> str:
        return f"registry.terraform.io/{self.doc['address']}"


def main(argv: list[str]) -> None:
    key = provider_key(argv)
    doc = load_schema(key)
    import tf.provider
    from tf.runner import run_provider

    servicer_cls = make_servicer(doc)
    # run_provider builds `tf.provider.ProviderServicer(provider)`; serve ours instead.
    tf.provider.ProviderServicer = lambda app: servicer_cls()  # type: ignore[assignment]
    run_provider(_App(doc), [a for a in argv if a.startswith("--")] or [argv[0]])


if __name__ == "__main__":
    main(sys.argv)
