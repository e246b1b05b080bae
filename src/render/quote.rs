//! Quoting for the languages kiln writes text in: POSIX sh words and Caddyfile tokens.

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

/// Why a string cannot be a Caddyfile token.
pub fn caddy_unsafe(s: &str) -> Option<&'static str> {
    if s.contains("{$") {
        return Some("`{$` starts an environment substitution in a Caddyfile");
    }
    if s.contains('\\') {
        return Some("backslashes cannot be quoted reliably in a Caddyfile");
    }
    if s.chars().any(|c| c.is_control()) {
        return Some("control characters cannot appear in a Caddyfile token");
    }
    None
}

/// One Caddyfile token that the Caddyfile lexer reads back as exactly `s`; placeholders are
/// escaped so the value is taken literally. The caller has rejected what [`caddy_unsafe`] names.
pub fn caddy(s: &str) -> String {
    debug_assert!(caddy_unsafe(s).is_none());
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@*=+,".contains(&b)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '{' => out.push_str("\\{"),
            '}' => out.push_str("\\}"),
            c => out.push(c),
        }
    }
    out.push('"');
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
}
