//! Quoting for the languages kiln writes text in: POSIX sh words, Caddyfile tokens, INI-like
//! `key=value` lines, systemd unit values and PHP single-quoted strings. A language that has
//! no escape for something (a newline in an INI value) refuses it: the `*_unsafe` functions
//! say why, and every quoting function here is total — whatever it is given, its output is
//! one literal of its language and can never end the literal early.

/// One POSIX sh word that expands to exactly `s`: single quotes, with `'` written as `'\''`.
pub fn sh(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Several words, each quoted.
pub fn sh_words<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| sh(w.as_ref())).collect::<Vec<_>>().join(" ")
}

/// A character that ends or breaks a line for some reader: C0 and C1 controls (newline, `\r`,
/// NUL, NEL, …), DEL, and Unicode's line and paragraph separators.
pub fn is_line_breaking(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Why `s` cannot be one line's value: the first control character in it, shown escaped.
pub fn line_unsafe(s: &str) -> Option<String> {
    s.chars()
        .find(|&c| is_line_breaking(c))
        .map(|c| format!("it contains the control character {}, which no line-based format can hold", c.escape_unicode()))
}

/// Why a string cannot be a Caddyfile token.
pub fn caddy_unsafe(s: &str) -> Option<&'static str> {
    if s.contains("{$") {
        return Some("`{$` starts an environment substitution in a Caddyfile");
    }
    if s.contains('\\') {
        return Some("backslashes cannot be quoted reliably in a Caddyfile");
    }
    if s.chars().any(is_line_breaking) {
        return Some("control characters cannot appear in a Caddyfile token");
    }
    None
}

/// One Caddyfile token that the Caddyfile lexer reads back as exactly `s`; placeholders are
/// escaped so the value is taken literally. Callers reject what [`caddy_unsafe`] names with a
/// located error before this point; should such a string reach it anyway, each character the
/// Caddyfile cannot hold (backslash, control characters, the `$` of `{$`) becomes U+FFFD, so
/// the output is still one token and never a directive.
pub fn caddy(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@*=+,".contains(&b)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut prev = '\0';
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '{' => out.push_str("\\{"),
            '}' => out.push_str("\\}"),
            '$' if prev == '{' => out.push('\u{FFFD}'),
            c if c == '\\' || is_line_breaking(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
        prev = c;
    }
    out.push('"');
    out
}

/// Why `s` cannot be the value of an INI-like `key=value` line (zabbix, pgBackRest, pretix,
/// php.ini, supervisord): these formats have no escapes, so a line break would start a new
/// directive, and readers strip the whitespace around a value.
pub fn ini_unsafe(s: &str) -> Option<String> {
    if let Some(why) = line_unsafe(s) {
        return Some(why);
    }
    if s.trim() != s {
        return Some("it starts or ends with whitespace, which INI readers strip".into());
    }
    None
}

/// Why `s` cannot be an INI section name (`[NAME]`).
pub fn ini_section_unsafe(s: &str) -> Option<String> {
    if let Some(why) = ini_unsafe(s) {
        return Some(why);
    }
    if s.is_empty() || s.contains(['[', ']', '#', ';', '=']) {
        return Some("a section name is not empty and has none of `[ ] # ; =`".into());
    }
    None
}

/// Why `s` cannot be the value of a systemd unit setting: no escape keeps a line break inside a
/// value, a trailing backslash continues the line, and surrounding whitespace is stripped.
pub fn systemd_unsafe(s: &str) -> Option<String> {
    if let Some(why) = line_unsafe(s) {
        return Some(why);
    }
    if s.ends_with('\\') {
        return Some("a trailing backslash continues a systemd line".into());
    }
    if s.trim() != s {
        return Some("it starts or ends with whitespace, which systemd strips".into());
    }
    None
}

/// A systemd unit setting's value that reads back as `s`: `%` specifiers escaped as `%%`.
/// Callers refuse what [`systemd_unsafe`] names; each such character becomes U+FFFD here.
pub fn systemd(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%%"),
            c if is_line_breaking(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    if out.ends_with('\\') {
        out.pop();
        out.push('\u{FFFD}');
    }
    out
}

/// A PHP single-quoted string literal whose value is exactly `s` (only `\\` and `\'` are
/// escapes there; `$` and everything else are literal).
pub fn php(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quotes() {
        assert_eq!(sh("plain"), "plain");
        assert_eq!(sh(""), "''");
        assert_eq!(sh("it's $HOME `x`"), "'it'\\''s $HOME `x`'");
    }

    #[test]
    fn caddy_quotes() {
        assert_eq!(caddy("example.com"), "example.com");
        assert_eq!(caddy("a b\"{c}"), "\"a b\\\"\\{c\\}\"");
        assert!(caddy_unsafe("{$HOME}").is_some());
    }

    #[test]
    fn caddy_never_leaves_its_token() {
        // What the callers refuse still cannot end the token or start a line.
        let t = caddy("/auth\\\nheader_up X-Pwned 1");
        assert!(!t.contains('\n') && !t.contains('\\'), "{t}");
        assert!(!caddy("{$HOME}").contains("{$"));
        assert!(!caddy("a\u{2028}b").contains('\u{2028}'));
    }

    #[test]
    fn line_languages_refuse_line_breaks() {
        for bad in ["a\nb", "a\rb", "a\0b", "a\u{85}b", "a\u{2028}b", "a\u{2029}b", "a\u{7f}b", "a\tb"] {
            assert!(ini_unsafe(bad).is_some(), "{bad:?}");
            assert!(systemd_unsafe(bad).is_some(), "{bad:?}");
            assert!(!systemd(bad).contains(['\n', '\r', '\0']));
        }
        assert!(ini_unsafe(" lead").is_some());
        assert!(ini_unsafe("system.run[*] ; # x=y").is_none());
        assert!(ini_section_unsafe("main]").is_some());
        assert!(ini_section_unsafe("main").is_none());
        assert!(systemd_unsafe("x\\").is_some());
        assert_eq!(systemd("50%"), "50%%");
    }

    #[test]
    fn php_strings() {
        assert_eq!(php("a'b\\c$d"), "'a\\'b\\\\c$d'");
        assert_eq!(php(""), "''");
    }
}
