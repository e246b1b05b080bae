//! Module templates: minijinja with strict undefined values, one environment per module that
//! holds only that module's files (a template cannot read outside its module), and a quoting
//! filter per output language (see [`add_filters`]). Every template string of a module is
//! compiled once, and every render runs on a fuel limit.

use std::collections::BTreeMap;
use std::ops::Range;

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
    broken: BTreeMap<String, TemplateError>,
}

/// A template failure: the line and byte range inside the template where minijinja knows it,
/// and for an undefined value the expression that was undefined and a hint.
#[derive(Clone, Debug)]
pub struct TemplateError {
    pub message: String,
    pub line: Option<usize>,
    /// The failing expression's bytes in the template source.
    pub range: Option<Range<usize>>,
    /// What a template may have meant (`did you mean `options.greeting`?`).
    pub help: Option<String>,
    /// The undefined expression (`options.greting`), when that is the failure.
    pub undefined: Option<String>,
}

impl TemplateError {
    /// The diagnostic, at `span`: the failing expression itself when the caller narrowed it
    /// (see [`expression_span`]), else the whole template string or line.
    pub fn at(self, span: Span) -> Diagnostic {
        let label = match &self.undefined {
            Some(x) => format!("`{x}` is undefined here"),
            None => "while rendering this".to_string(),
        };
        Diagnostic::error("E0050", format!("template error: {}", self.message)).primary(span, label).with_help(self.help)
    }

    /// The bytes of `source` (the template) to point at: the undefined expression itself where
    /// it is written (minijinja's range may cover the filter or operator that used it), else
    /// the failing expression.
    pub fn focus(&self, source: &str) -> Option<Range<usize>> {
        let range = self.range.clone().filter(|r| r.start < r.end && r.end <= source.len());
        let Some(x) = &self.undefined else { return range };
        let found: Vec<usize> = source.match_indices(x.as_str()).map(|(i, _)| i).collect();
        let before = range.as_ref().map_or(usize::MAX, |r| r.end);
        match found.iter().rev().find(|&&i| i < before).or(found.first()) {
            Some(&i) => Some(i..i + x.len()),
            None => range,
        }
    }

    /// Adds a hint for an undefined expression from what the render could see.
    pub fn explain(mut self, ctx: &Value) -> TemplateError {
        if let Some(x) = &self.undefined
            && self.help.is_none()
        {
            self.help = undefined_help(x, ctx);
        }
        self
    }
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let undefined = e.detail().and_then(undefined_expr);
        let message = match (e.kind(), e.detail(), &undefined) {
            (minijinja::ErrorKind::UndefinedError, _, Some(x)) => format!("`{x}` is undefined"),
            (kind, Some(d), _) => format!("{kind}: {d}"),
            (kind, None, _) => kind.to_string(),
        };
        TemplateError { message, line: e.line(), range: e.range(), help: None, undefined }
    }
}

/// The expression minijinja names in an undefined-value detail (`` `a.b` is undefined ``).
fn undefined_expr(detail: &str) -> Option<String> {
    let (before, _) = detail.split_once("` is undefined")?;
    let start = before.rfind('`')?;
    Some(before[start + 1..].to_string()).filter(|x| !x.is_empty())
}

/// A hint for an undefined `a.b.c`: the closest key that exists where the last step failed,
/// and what `requires.SLOT` and `secrets.SLOT` depend on.
fn undefined_help(expr: &str, ctx: &Value) -> Option<String> {
    let steps: Vec<&str> = expr.split('.').collect();
    let mut at = ctx.clone();
    for (i, step) in steps.iter().enumerate() {
        let next = at.get_attr(step).ok().filter(|v| !v.is_undefined());
        let Some(next) = next else {
            let parent = steps[..i].join(".");
            let keys: Vec<String> = at.try_iter().map(|it| it.filter_map(|k| k.as_str().map(str::to_string)).collect()).unwrap_or_default();
            let near = crate::diag::did_you_mean(step, keys.iter().map(String::as_str));
            let path = |k: &str| if parent.is_empty() { k.to_string() } else { format!("{parent}.{k}") };
            return Some(match (parent.as_str(), near) {
                (_, Some(k)) => format!("did you mean `{}`?", path(k)),
                ("requires", None) => format!(
                    "`requires.{step}` is set only when `connects` fills slot `{step}` (declared as `[requires.{step}]`); guard an optional slot: `{{% if requires.{step} is defined %}}`"
                ),
                ("secrets", None) => format!(
                    "`secrets.{step}` is set only when the service binds secret slot `{step}` (declared as `[secrets.{step}]`); guard an optional one: `{{% if secrets.{step} is defined %}}`"
                ),
                (_, None) if keys.is_empty() => format!("`{}` has no keys here", if parent.is_empty() { "the context" } else { &parent }),
                (_, None) => format!(
                    "{} {}",
                    if parent.is_empty() { "templates see".to_string() } else { format!("`{parent}` holds") },
                    keys.iter().map(|k| format!("`{}`", path(k))).collect::<Vec<_>>().join(", ")
                ),
            });
        };
        at = next;
    }
    None
}

/// The span of a failing expression inside a template string written in a TOML file, when the
/// string is written literally there (no escapes, so template bytes are file bytes); else `span`.
pub fn expression_span(span: Span, file_text: &str, source: &str, e: &TemplateError) -> Span {
    let Some(range) = e.focus(source) else { return span };
    let written = file_text.get(span.start as usize..span.end as usize).unwrap_or_default();
    // `"…"`, `'…'`, and the triple-quoted forms whose first newline TOML drops
    for skip in [1, 3, 4, 5] {
        if written.get(skip..skip + source.len()) == Some(source) {
            let start = span.start as usize + skip;
            return Span::new(span.file, start + range.start..start + range.end);
        }
    }
    // Escapes moved the bytes: the expression's text, where it is written only once.
    let text = &source[range];
    match written.match_indices(text).map(|(i, _)| i).collect::<Vec<_>>().as_slice() {
        [i] => Span::new(span.file, span.start as usize + i..span.start as usize + i + text.len()),
        _ => span,
    }
}

/// Instructions one template render may run: far above any real module's needs (a fleet of
/// thousands of scrape targets), far below a hang.
pub const FUEL: u64 = 10_000_000;

fn refused(why: impl Into<String>) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, why.into())
}

/// A filter that quotes for a language after refusing what the language cannot hold.
fn checked(
    unsafe_why: fn(&str) -> Option<String>,
    quote: fn(&str) -> String,
    lang: &'static str,
) -> impl Fn(String) -> Result<String, minijinja::Error> + Send + Sync + 'static {
    move |s: String| match unsafe_why(&s) {
        Some(why) => Err(refused(format!("{:?} cannot be {lang}: {why}", s))),
        None => Ok(quote(&s)),
    }
}

/// One YAML flow scalar (for `key: {{ v | yaml }}` and list items), serialised by serde-saphyr.
fn yaml_scalar(s: &str) -> Result<String, minijinja::Error> {
    let out = crate::render::yaml(&s);
    let out = out.strip_prefix("---").map(str::trim_start).unwrap_or(&out).trim_end_matches('\n');
    if out.contains('\n') {
        return Err(refused(format!("{s:?} does not serialise to a one-line YAML scalar")));
    }
    Ok(out.to_string())
}

/// The quoting filters, one per output language a module template writes: `sh` (a POSIX sh
/// word), `caddy` (a Caddyfile token), `ini` (the value of an INI-like `key=value` line),
/// `ini_section` (an INI `[section]` name), `systemd` (a unit setting's value), `php` (a PHP
/// single-quoted string literal), `yaml` (a YAML scalar) and `urlencode` (a URL component). Each fails the render, naming the
/// value, when the language cannot hold it.
fn add_filters(env: &mut Environment<'static>) {
    env.add_filter("sh", |s: String| quote::sh(&s));
    env.add_filter("caddy", checked(|s| quote::caddy_unsafe(s).map(str::to_string), quote::caddy, "a Caddyfile token"));
    env.add_filter("ini", checked(quote::ini_unsafe, str::to_string, "an INI value"));
    env.add_filter("ini_section", checked(quote::ini_section_unsafe, str::to_string, "an INI section name"));
    env.add_filter("systemd", checked(quote::systemd_unsafe, quote::systemd, "a systemd unit value"));
    env.add_filter("php", |s: String| quote::php(&s));
    env.add_filter("yaml", |s: String| yaml_scalar(&s));
    env.add_filter("urlencode", |s: String| percent_encode(&s));
}

/// Percent-encodes every byte but RFC 3986's unreserved characters: a URL component (user,
/// password, path segment) that cannot end its component.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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
        v.extend(e.tls.iter().map(|t| t.value.as_str()));
    }
    if let Some(h) = &d.healthcheck {
        v.extend(h.test.iter().map(|s| s.value.as_str()));
    }
    if let Some(b) = &d.backup {
        v.extend(b.dump.iter().chain(&b.restore).flatten().map(|s| s.value.as_str()));
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
        add_filters(&mut env);
        // A runaway loop in a module template is an error, not a hang.
        env.set_fuel(Some(FUEL));
        let mut broken = BTreeMap::new();
        for (name, (_, text)) in &m.templates {
            if let Err(e) = env.add_template_owned(name.clone(), text.clone()) {
                broken.insert(name.clone(), TemplateError::from(e));
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
                    broken.insert(name.clone(), TemplateError::from(e));
                    inline.insert(src.to_string(), name);
                }
            }
        }
        Templates { env, inline, broken }
    }

    fn render_named(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        if let Some(e) = self.broken.get(name) {
            return Err(e.clone());
        }
        let render = || -> Result<String, minijinja::Error> { self.env.get_template(name)?.render(ctx) };
        render().map_err(|e| TemplateError::from(e).explain(ctx))
    }

    pub fn render_str(&self, source: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !is_template(source) {
            return Ok(source.to_string());
        }
        match self.inline.get(source) {
            Some(name) => self.render_named(name, ctx),
            None => self.env.render_str(source, ctx).map_err(|e| TemplateError::from(e).explain(ctx)),
        }
    }

    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.render_named(name, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, v: &str) -> Result<String, minijinja::Error> {
        let mut env = Environment::new();
        add_filters(&mut env);
        env.render_str(src, minijinja::context! { v => v })
    }

    #[test]
    fn yaml_scalars_are_one_line() {
        for v in ["plain", "a: b", "\"'", "x\ny", "- [", "\0", "true", "", "\u{2028}", "#c"] {
            let out = render("{{ v | yaml }}", v).unwrap();
            assert!(!out.contains('\n'), "{v:?} → {out}");
            let back: String = serde_saphyr::from_str(&format!("k: {out}\n")).map(|m: BTreeMap<String, String>| m["k"].clone()).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn line_languages_refuse_what_they_cannot_hold() {
        for f in ["ini", "ini_section", "systemd"] {
            assert!(render(&format!("{{{{ v | {f} }}}}"), "a\nb").is_err(), "{f}");
        }
        assert_eq!(render("{{ v | ini }}", "system.run[*]").unwrap(), "system.run[*]");
        assert_eq!(render("{{ v | php }}", "x'); system('id'); ('").unwrap(), "'x\\'); system(\\'id\\'); (\\''");
        assert_eq!(render("{{ v | urlencode }}", "a b@c/d:é").unwrap(), "a%20b%40c%2Fd%3A%C3%A9");
    }

    #[test]
    fn undefined_errors_name_the_expression() {
        assert_eq!(undefined_expr("`options.x` is undefined").as_deref(), Some("options.x"));
        assert_eq!(undefined_expr("bad call (`a.b` is undefined, from loop)").as_deref(), Some("a.b"));
        assert_eq!(undefined_expr("something else"), None);
        let ctx = minijinja::context! { options => minijinja::context! { greeting => "hi" }, requires => minijinja::context! {} };
        assert_eq!(undefined_help("options.greting", &ctx).as_deref(), Some("did you mean `options.greeting`?"));
        assert!(undefined_help("requires.cache", &ctx).is_some_and(|h| h.contains("requires.cache is defined")));
        assert_eq!(undefined_help("zzz", &ctx).as_deref(), Some("templates see `options`, `requires`"));
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        let e = env.render_str("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", ()).unwrap_err();
        assert_eq!(e.kind(), minijinja::ErrorKind::OutOfFuel);
    }
}
