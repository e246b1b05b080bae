//! `kiln schema`: a JSON Schema of the system file (and of each imported file), generated from
//! the language and the available modules, so editors (taplo, Even Better TOML) complete and
//! check systems.

use serde_json::{Map, Value, json};

use crate::load::LoadedModule;
use crate::syntax::module::OptType;
use crate::syntax::system::ProviderKind;

fn named(item: Value) -> Value {
    json!({ "type": "object", "propertyNames": { "pattern": "^[a-z][a-z0-9_-]{0,62}$" }, "additionalProperties": item })
}

fn strict(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

fn option_schema(ty: OptType, values: &[String], description: Option<&str>) -> Value {
    let mut s = match ty {
        OptType::Int => json!({ "type": "integer" }),
        OptType::Port => json!({ "type": "integer", "minimum": 1, "maximum": 65535 }),
        OptType::Bool => json!({ "type": "boolean" }),
        OptType::List => json!({ "type": "array", "items": { "type": "string" } }),
        OptType::Duration => json!({ "type": "string", "pattern": "^([0-9]+[smhd])+$" }),
        OptType::Size => json!({ "type": "string", "pattern": "^[0-9]+(B|K|KB|M|MB|G|GB|KiB|MiB|GiB|TiB)?$" }),
        _ => json!({ "type": "string" }),
    };
    if !values.is_empty() {
        s["enum"] = json!(values);
    }
    if let Some(d) = description {
        s["description"] = json!(d);
    }
    s
}

fn module_rule(m: &LoadedModule) -> Value {
    let d = &m.decl;
    let mut options = Map::new();
    for o in &d.options {
        let values: Vec<String> = o.values.iter().map(|v| v.value.clone()).collect();
        options.insert(o.name.value.clone(), option_schema(o.ty.value, &values, o.description.as_ref().map(|x| x.value.as_str())));
    }
    let required_options: Vec<&str> = d.options.iter().filter(|o| o.default.is_none()).map(|o| o.name.value.as_str()).collect();
    let secrets: Map<String, Value> = d.secrets.iter().map(|s| (s.slot.value.clone(), json!({ "type": "string" }))).collect();
    let required_secrets: Vec<&str> = d.secrets.iter().filter(|s| !s.optional).map(|s| s.slot.value.as_str()).collect();
    let volumes: Map<String, Value> = d.volumes.iter().map(|v| (v.name.value.clone(), json!({ "type": "string" }))).collect();
    let mut required = Vec::new();
    if !required_options.is_empty() {
        required.push("options");
    }
    if !required_secrets.is_empty() {
        required.push("secrets");
    }
    json!({
        "if": { "properties": { "module": { "const": d.name.value } }, "required": ["module"] },
        "then": { "required": required, "properties": {
            "options": { "type": "object", "properties": options, "required": required_options, "additionalProperties": false },
            "secrets": { "type": "object", "properties": secrets, "required": required_secrets, "additionalProperties": false },
            "volumes": { "type": "object", "properties": volumes, "additionalProperties": false },
        } }
    })
}

pub fn system_schema<'a>(modules: impl IntoIterator<Item = &'a LoadedModule>) -> Value {
    let modules: Vec<&LoadedModule> = modules.into_iter().collect();
    let names: Vec<&str> = modules.iter().map(|m| m.decl.name.value.as_str()).collect();
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let service = json!({
        "type": "object",
        "properties": {
            "module": { "enum": names, "description": "The module this service instantiates (`kiln modules list`)." },
            "host": { "type": "string", "description": "The host it runs on." },
            "connects": { "type": "array", "items": { "type": "string" }, "description": "Services (or `service.endpoint`) it connects to: fills the module's requirements, opens firewall ports, orders start-up." },
            "options": { "type": "object" },
            "secrets": { "type": "object", "additionalProperties": { "type": "string" } },
            "volumes": { "type": "object", "additionalProperties": { "type": "string" } },
            "memory": { "type": "string" },
            "cpus": { "type": "number" },
            "bridges": { "type": "array", "items": { "type": "string" }, "description": "Docker networks of the host this service joins." },
            "phase": { "type": "integer", "minimum": 0, "maximum": 99, "description": "Start phase (0 first)." },
            "expose": { "type": "array", "items": { "type": "string" }, "description": "Endpoints open to the internet without an edge." },
        },
        "required": ["module", "host"],
        "additionalProperties": false,
        "allOf": modules.iter().map(|m| module_rule(m)).collect::<Vec<_>>(),
    });
    let host = strict(
        json!({
            "provider": string, "type": string, "location": string, "image": string, "zone": string,
            "public": { "type": "boolean" }, "bastion": { "type": "boolean" },
            "networks": { "type": "object", "additionalProperties": string },
            "disks": { "type": "object", "additionalProperties": string },
            "address": string, "group": string,
            "password_ssh": { "type": "boolean" }, "fail2ban_http": { "type": "boolean" },
            "bridges": { "type": "object", "additionalProperties": strict(json!({ "subnet": string, "internal": { "type": "boolean" } }), &[]) },
        }),
        &["provider", "image"],
    );
    let route = strict(
        json!({
            "service": string, "endpoint": string, "tls": { "enum": ["acme", "dns", "internal"] }, "auth": string, "edge": string,
            "rate_limit": strict(json!({ "average": { "type": "integer" }, "burst": { "type": "integer" } }), &["average"]),
            "cors": strings, "allow": strings, "crowdsec": string,
        }),
        &["service"],
    );
    let secret = strict(json!({ "file": string, "key": string }), &["file"]);
    let dns = strict(json!({ "provider": string, "proxied": { "type": "boolean" } }), &["provider"]);
    // In a template, names hold `{instance}` and entries may name the `feature` that keeps them.
    let featured = |schema: &Value| {
        let mut s = schema.clone();
        s["properties"]["feature"] = json!({ "type": "string" });
        s
    };
    let template = strict(
        json!({
            "hosts": { "type": "object", "additionalProperties": featured(&host) },
            "services": { "type": "object", "additionalProperties": featured(&service) },
            "routes": { "type": "object", "additionalProperties": featured(&route) },
            "secrets": { "type": "object", "additionalProperties": featured(&secret) },
            "dns": { "type": "object", "additionalProperties": featured(&dns) },
        }),
        &[],
    );
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://kiln.invalid/schema/system.json",
        "title": "kiln system file",
        "description": "A kiln system (system.toml) or a file it imports.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "imports": strings,
            "system": strict(json!({ "name": string, "domains": strings, "store": string }), &["name"]),
            "dns": { "type": "object", "additionalProperties": dns },
            "cdn": strict(json!({ "provider": { "enum": ["cloudflare"] } }), &["provider"]),
            "providers": named(strict(json!({ "kind": { "enum": ProviderKind::NAMES } }), &["kind"])),
            "networks": named(strict(json!({ "cidr": string }), &["cidr"])),
            "zones": named(strict(json!({ "description": string, "accepts": strings }), &[])),
            "admins": named(strict(json!({ "keys": strings, "sources": strings }), &[])),
            "hosts": named(host),
            "services": named(service),
            "routes": { "type": "object", "additionalProperties": route },
            "secrets": named(secret),
            "buckets": named(strict(json!({ "provider": string, "region": string }), &["provider"])),
            "databases": named(strict(json!({ "provider": string, "engine": string, "node_type": string, "user": string, "region": string }), &["provider"])),
            "allow": { "type": "object", "additionalProperties": strict(json!({ "hosts": strings, "services": strings, "routes": strings, "reason": string }), &["reason"]) },
            "backup": strict(json!({
                "repository": string, "password": string, "environment": string, "schedule": string, "check": string,
                "keep": strict(json!({ "daily": { "type": "integer" }, "weekly": { "type": "integer" }, "monthly": { "type": "integer" }, "yearly": { "type": "integer" }, "last": { "type": "integer" } }), &[]),
            }), &["repository", "password"]),
            "templates": named(template),
            "instances": named(strict(json!({ "template": string, "features": strings, "vars": { "type": "object", "additionalProperties": string } }), &["template"])),
        },
    })
}
