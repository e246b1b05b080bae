//! Module templates: minijinja with strict undefined values, one environment per module that
//! holds only that module's files (a template cannot read outside its module), and a quoting
//! filter per output language. Every template string of a module is compiled once.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::diag::{Diagnostic, Span};
use crate::load::LoadedModule;
use crate::render::quote;
use crate::syntax::module::{IntOrTpl, ModuleDecl};

pub struct Templates {
    env: Environment<'static>,
    /// inline template source → its name in `env`
    inline: BTreeMap<String, String>,
    /// templates that failed to compile: name → error
    broken: BTreeMap<String, (String, Option<usize>)>,
}

/// A template failure, with the line inside the template where minijinja knows it.
pub struct TemplateError {
    pub message: String,
    pub line: Option<usize>,
}

impl TemplateError {
    pub fn at(self, span: Span) -> Diagnostic {
        Diagnostic::error("E0050", format!("template error: {}", self.message)).primary(span, "while rendering this")
    }
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let mut message = e.kind().to_string();
        if let Some(d) = e.detail() {
            message = format!("{message}: {d}");
        }
        TemplateError { message, line: e.line() }
    }
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Every string of a module declaration that is rendered per service.
fn inline_sources(d: &ModuleDecl) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    if let Some(c) = &d.container {
        v.extend(c.image.iter().map(|s| s.value.as_str()));
        v.extend(c.user.iter().map(|s| s.value.as_str()));
        for l in [&c.command, &c.entrypoint].into_iter().flatten() {
            v.extend(l.iter().map(|s| s.value.as_str()));
        }
        v.extend(c.environment.iter().map(|(_, s)| s.value.as_str()));
    }
    for e in &d.endpoints {
        if let IntOrTpl::Tpl(t) = &e.port.value {
            v.push(t);
        }
    }
    if let Some(h) = &d.healthcheck {
        v.extend(h.test.iter().map(|s| s.value.as_str()));
    }
    if let Some(b) = &d.backup {
        v.extend(b.dump.iter().flatten().map(|s| s.value.as_str()));
    }
    v.retain(|s| is_template(s));
    v
}

impl Templates {
    pub fn for_module(m: &LoadedModule) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        // Config languages spell booleans `true`/`false`, not Python's `True`/`False`.
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Bool {
                out.write_str(if value.is_true() { "true" } else { "false" }).map_err(minijinja::Error::from)
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_filter("sh", |s: String| quote::sh(&s));
        env.add_filter("caddy", |s: String| -> Result<String, minijinja::Error> {
            match quote::caddy_unsafe(&s) {
                Some(why) => Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, why)),
                None => Ok(quote::caddy(&s)),
            }
        });
        let mut broken = BTreeMap::new();
        for (name, (_, text)) in &m.templates {
            if let Err(e) = env.add_template_owned(name.clone(), text.clone()) {
                let e = TemplateError::from(e);
                broken.insert(name.clone(), (e.message, e.line));
            }
        }
        let mut inline = BTreeMap::new();
        for (i, src) in inline_sources(&m.decl).into_iter().enumerate() {
            if inline.contains_key(src) {
                continue;
            }
            let name = format!("<inline {i}>");
            match env.add_template_owned(name.clone(), src.to_string()) {
                Ok(()) => {
                    inline.insert(src.to_string(), name);
                }
                Err(e) => {
                    let e = TemplateError::from(e);
                    broken.insert(name.clone(), (e.message, e.line));
                    inline.insert(src.to_string(), name);
                }
            }
        }
        Templates { env, inline, broken }
    }

    fn render_named(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        if let Some((message, line)) = self.broken.get(name) {
            return Err(TemplateError { message: message.clone(), line: *line });
        }
        Ok(self.env.get_template(name)?.render(ctx)?)
    }

    pub fn render_str(&self, source: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !is_template(source) {
            return Ok(source.to_string());
        }
        match self.inline.get(source) {
            Some(name) => self.render_named(name, ctx),
            None => Ok(self.env.render_str(source, ctx)?),
        }
    }

    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.render_named(name, ctx)
    }
}
