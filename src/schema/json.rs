//! The JSON Schema `kiln schema` prints, generated from the key table ([`super::ROOT`]) and the
//! modules' options: types and patterns for editors, a template's copies of entries, and each
//! module's options, secret slots and volumes on the services that use it.

use serde_json::{Map, Value, json};

use super::*;

/// What the schema generation needs from the modules.
struct Ctx<'a> {
    modules: Vec<&'a LoadedModule>,
}

fn text_schema(t: Text) -> Value {
    match t.pattern {
        Some(p) => json!({ "type": "string", "pattern": p }),
        None => json!({ "type": "string" }),
    }
}

fn ty_schema(ty: &Ty, cx: &Ctx) -> Value {
    match ty {
        Ty::Text(t) => text_schema(*t),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int { min, max } if *max == i64::MAX => json!({ "type": "integer", "minimum": min }),
        Ty::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Number => json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 1024 }),
        Ty::List(item) => json!({ "type": "array", "items": ty_schema(item, cx) }),
        Ty::Table(keys) => table_schema(keys, cx),
        Ty::Map(k, _, v) => {
            let mut s = json!({ "type": "object", "additionalProperties": ty_schema(v, cx) });
            if let Some(p) = k.pattern {
                s["propertyNames"] = json!({ "pattern": p });
            }
            s
        }
        Ty::Module => json!({ "type": "string", "enum": cx.modules.iter().map(|m| m.decl.name.value.as_str()).collect::<Vec<_>>() }),
        Ty::Service(keys) => {
            let mut s = table_schema(keys, cx);
            s["allOf"] = json!(cx.modules.iter().map(|m| module_rule(m)).collect::<Vec<_>>());
            s
        }
        Ty::Options => json!({ "type": "object" }),
        Ty::Featured(of) => featured(of, cx),
        Ty::Connects => {
            let slots =
                json!({ "type": "object", "propertyNames": { "pattern": NAME.pattern }, "additionalProperties": { "type": "string" } });
            json!({ "anyOf": [{ "type": "array", "items": { "anyOf": [{ "type": "string" }, slots] } }, slots] })
        }
    }
}

fn key_schema(k: &Key, cx: &Ctx) -> Value {
    let mut s = ty_schema(&k.ty, cx);
    let mut doc = k.doc.to_string();
    match k.default {
        Default::Value(v) => s["default"] = toml_json(v),
        Default::Says(words) => doc.push_str(&format!(" Default: {words}.")),
        Default::Absent | Default::Required => {}
    }
    s["description"] = json!(doc);
    if let Some(e) = k.example {
        s["examples"] = json!([toml_json(e)]);
    }
    s
}

fn table_schema(keys: &[Key], cx: &Ctx) -> Value {
    let properties: Map<String, Value> = keys.iter().map(|k| (k.name.to_string(), key_schema(k, cx))).collect();
    let required: Vec<&str> = keys.iter().filter(|k| k.default == Default::Required).map(|k| k.name).collect();
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

/// A template's copy of a top-level entry: `{instance}` and variables may stand in any string,
/// so the strings' patterns are dropped; `feature` is added.
fn featured(of: &str, cx: &Ctx) -> Value {
    let Ty::Map(_, _, entry) = root_key(of).ty else { unreachable!("templates copy entries of tables") };
    let mut s = ty_schema(entry, cx);
    drop_patterns(&mut s);
    s["properties"]["feature"] = key_schema(&FEATURE, cx);
    s
}

fn drop_patterns(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("pattern");
            m.remove("propertyNames");
            m.values_mut().for_each(drop_patterns);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_patterns),
        _ => {}
    }
}

fn node_json(n: &Node) -> Value {
    match &n.value {
        TomlValue::Str(s) | TomlValue::Datetime(s) => json!(s),
        TomlValue::Int(i) => json!(i),
        TomlValue::Float(f) => json!(f),
        TomlValue::Bool(b) => json!(b),
        TomlValue::Array(items) => Value::Array(items.iter().map(node_json).collect()),
        TomlValue::Table(t) => Value::Object(t.entries.iter().map(|e| (e.key.clone(), node_json(&e.value))).collect()),
    }
}

fn option_schema(ty: OptType, values: &[String]) -> Value {
    let mut s = match ty {
        OptType::Int => json!({ "type": "integer" }),
        OptType::Port => json!({ "type": "integer", "minimum": 1, "maximum": 65535 }),
        OptType::Bool => json!({ "type": "boolean" }),
        OptType::List => json!({ "type": "array", "items": { "type": "string" } }),
        OptType::Duration => text_schema(DURATION),
        OptType::Size => text_schema(SIZE),
        _ => json!({ "type": "string" }),
    };
    if !values.is_empty() {
        s["enum"] = json!(values);
    }
    s
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn module_rule(m: &LoadedModule) -> Value {
    let d = &m.decl;
    let module = &d.name.value;
    let mut options = Map::new();
    for o in &d.options {
        let values: Vec<String> = o.values.iter().map(|v| v.value.clone()).collect();
        let mut s = option_schema(o.ty.value, &values);
        let doc = o.description.as_ref().map(|x| one_line(&x.value));
        s["description"] = json!(doc.unwrap_or_else(|| format!("Option `{}` of module `{module}` ({}).", o.name.value, o.ty.value.name())));
        if let Some(def) = &o.default {
            s["default"] = node_json(def);
        }
        if let Some(f) = &o.from_route {
            let doc =
                format!("{} Left out: the {} of the service's first route.", s["description"].as_str().unwrap_or_default(), f.value.name());
            s["description"] = json!(doc);
        }
        if let Some(e) = &o.example {
            s["examples"] = json!([node_json(e)]);
        }
        options.insert(o.name.value.clone(), s);
    }
    // An option taken from the service's route may be left out: whether the service has a route
    // is for `kiln check` to say (E0022), not the schema.
    let required_options: Vec<&str> =
        d.options.iter().filter(|o| o.default.is_none() && o.from_route.is_none()).map(|o| o.name.value.as_str()).collect();
    let secrets: Map<String, Value> = d
        .secrets
        .iter()
        .map(|s| {
            let what = s.description.as_ref().map(|x| format!(": {}", one_line(&x.value))).unwrap_or_default();
            let doc = format!("The `[secrets]` entry for module `{module}`'s secret slot `{}`{what}", s.slot.value);
            (s.slot.value.clone(), json!({ "type": "string", "pattern": NAME.pattern, "description": doc }))
        })
        .collect();
    // A slot a requirement may fill from the connected service (`same_secrets`) can be left out.
    let shared = |slot: &str| d.requires.iter().any(|r| r.same_secrets.iter().any(|(mine, _)| mine.value == slot));
    let required_secrets: Vec<&str> =
        d.secrets.iter().filter(|s| !s.optional && !shared(&s.slot.value)).map(|s| s.slot.value.as_str()).collect();
    let volumes: Map<String, Value> = d
        .volumes
        .iter()
        .map(|v| {
            let backed = if v.backup { ", backed up" } else { "" };
            let doc =
                format!("The host volume for module `{module}`'s volume `{}` (mounted at `{}`{backed}).", v.name.value, v.target.value);
            (v.name.value.clone(), json!({ "type": "string", "pattern": NAME.pattern, "description": doc }))
        })
        .collect();
    // The table form of `connects` names the module's requirement slots.
    let slots: Map<String, Value> = d
        .requires
        .iter()
        .map(|r| {
            let mods = r.modules.iter().map(|m| format!("`{}`", m.value)).collect::<Vec<_>>().join(" or ");
            let doc = format!("The service (a {mods}) that fills module `{module}`'s requirement slot `{}`.", r.slot.value);
            (r.slot.value.clone(), json!({ "type": "string", "description": doc }))
        })
        .collect();
    let mut required = Vec::new();
    if !required_options.is_empty() {
        required.push("options");
    }
    if !required_secrets.is_empty() {
        required.push("secrets");
    }
    json!({
        "if": { "properties": { "module": { "const": module, "description": format!("Selects the rules of module `{module}`.") } }, "required": ["module"] },
        "then": { "required": required, "properties": {
            "options": { "type": "object", "properties": options, "required": required_options, "additionalProperties": false, "description": format!("Module `{module}`'s options (docs/modules/{module}.md).") },
            "secrets": { "type": "object", "properties": secrets, "required": required_secrets, "additionalProperties": false, "description": format!("Module `{module}`'s secret slots, each bound to a `[secrets]` entry.") },
            "volumes": { "type": "object", "properties": volumes, "additionalProperties": false, "description": format!("Module `{module}`'s volumes, each given its name on the host.") },
            "connects": { "if": { "type": "object" }, "then": { "properties": slots, "additionalProperties": false }, "description": format!("What module `{module}` connects to; a table names its requirement slots.") },
        } }
    })
}

pub fn system_schema<'a>(modules: impl IntoIterator<Item = &'a LoadedModule>) -> Value {
    let cx = Ctx { modules: modules.into_iter().collect() };
    let s = table_schema(ROOT, &cx);
    let mut out = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://kiln.invalid/schema/system.json",
        "title": "kiln system file",
        "description": "A kiln system (system.toml) or a file it imports. Every key is described in docs/reference.md.",
    });
    if let (Value::Object(o), Value::Object(body)) = (&mut out, s) {
        o.extend(body);
    }
    out
}

/// Every property of a schema, by path, with whether it has a description.
pub fn properties(schema: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    collect(schema, "", &mut out);
    out
}

fn collect(v: &Value, path: &str, out: &mut Vec<(String, bool)>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (k, p) in props {
                    out.push((format!("{path}/{k}"), p.get("description").is_some_and(Value::is_string)));
                }
            }
            for (k, x) in m {
                collect(x, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| collect(x, &format!("{path}/{i}"), out)),
        _ => {}
    }
}
