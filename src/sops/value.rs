//! Leaf values as sops types them (`type:str`, `int`, `float`, `bool`, `bytes`, `time`), and
//! how kiln returns them as text.

/// A leaf value: what the parsers give for clear values, and what a decrypted value's
/// `type:` says it is.
#[derive(Clone, PartialEq)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Time(String),
}

/// A value as kiln returns it: strings as they are, numbers in decimal, booleans as
/// `true` / `false`.
pub(super) fn render(value: &Scalar) -> Result<String, &'static str> {
    match value {
        Scalar::Str(s) | Scalar::Time(s) => Ok(s.clone()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(x) => Ok(go_float(*x)),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| "a bytes value that is not UTF-8 text"),
    }
}

/// Go's `strconv.FormatFloat(x, 'f', -1, 64)`: the shortest digits that read back as `x`,
/// never in exponent form.
pub(super) fn go_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{x}")
    }
}

/// Go's `strconv.ParseBool`.
pub(super) fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A decrypted value typed by its `type:` field, as sops' cipher does.
pub(super) fn typed(kind: &str, plain: Vec<u8>) -> Result<Scalar, String> {
    let text = || String::from_utf8(plain.clone()).map_err(|_| format!("a {kind} value that is not UTF-8"));
    match kind {
        "str" => text().map(Scalar::Str),
        "int" => text()?.parse().map(Scalar::Int).map_err(|_| "an int value that is not a decimal integer".into()),
        "float" => text()?.parse().map(Scalar::Float).map_err(|_| "a float value that is not a number".into()),
        "bool" => go_bool(&text()?).map(Scalar::Bool).ok_or_else(|| "a bool value that is not true or false".into()),
        "bytes" => Ok(Scalar::Bytes(plain)),
        "time" => text().map(Scalar::Time),
        other => Err(format!("unknown value type `{other}` (expected str, int, float, bool, bytes or time)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(100.0), "100");
        assert_eq!(go_float(1.5e-7), "0.00000015");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(-0.0), "-0");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}
