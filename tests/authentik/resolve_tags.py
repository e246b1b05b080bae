"""Stand-in for authentik's blueprint tag resolution (authentik/blueprints/v1/common.py), for the
schema judge: reads a blueprint, replaces each tag by a value of the type authentik would put
there, and prints the document as JSON for check-jsonschema.

  !KeyOf ID            -> the primary key of the entry ID of this blueprint (an error if none)
  !Find [MODEL, [...]] -> the primary key of an object of MODEL
  !File PATH           -> the file's contents (a stand-in string; the file is not read)

Primary keys are UUIDs or integers by model, as in authentik's models. An unknown tag or model
is an error, so the judge never passes what it cannot type. With --refs, !KeyOf stays visible as
"KeyOf:ID" (for tests that follow references)."""

import json
import sys

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode, SequenceNode

UUID = "00000000-0000-4000-8000-000000000000"
PK = {
    "authentik_flows.flow": UUID,
    "authentik_crypto.certificatekeypair": UUID,
    "authentik_providers_oauth2.scopemapping": UUID,
    "authentik_core.application": UUID,
    "authentik_outposts.outpost": UUID,
    "authentik_providers_proxy.proxyprovider": 1,
    "authentik_providers_oauth2.oauth2provider": 1,
    "authentik_sources_oauth.oauthsource": UUID,
    "authentik_stages_identification.identificationstage": UUID,
}


class Tag:
    def __init__(self, name, value):
        self.name, self.value = name, value


def constructor(name):
    def construct(loader, node):
        if isinstance(node, ScalarNode):
            return Tag(name, loader.construct_scalar(node))
        if isinstance(node, SequenceNode):
            return Tag(name, loader.construct_sequence(node, deep=True))
        raise SystemExit(f"!{name} on a mapping")

    return construct


def main():
    refs = "--refs" in sys.argv
    path = [a for a in sys.argv[1:] if a != "--refs"][0]
    yaml = YAML(typ="safe", pure=True)
    for name in ("KeyOf", "Find", "File"):
        yaml.constructor.add_constructor(f"!{name}", constructor(name))
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f)
    ids = {e["id"]: e["model"] for e in doc.get("entries", []) if "id" in e}

    def resolve(v):
        if isinstance(v, Tag):
            if v.name == "KeyOf":
                if v.value not in ids:
                    raise SystemExit(f"!KeyOf {v.value}: no entry with that id")
                if refs:
                    return f"KeyOf:{v.value}"
                model = ids[v.value]
            elif v.name == "Find":
                model = v.value[0]
            else:
                return "stand-in file contents"
            if model not in PK:
                raise SystemExit(f"no primary key type known for {model}")
            return PK[model]
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        if isinstance(v, list):
            return [resolve(x) for x in v]
        return v

    json.dump(resolve(doc), sys.stdout, indent=1, sort_keys=True)


main()
