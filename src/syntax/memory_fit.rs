//! `[resources.fit.OPTION]` in a module file: an option that sizes memory inside the service
//! (Valkey's `maxmemory`, PostgreSQL's `shared_buffers`, a JVM heap), the share of the service's
//! memory limit it may take, and how to read its value. The rule `memory-over-limit` holds every
//! service to it.

use crate::diag::Diagnostic;
use crate::syntax::decode::{Sink, Sp, TableReader, typed};
use crate::syntax::module::{OptType, OptionDecl};
use crate::syntax::system::one_of;
use crate::types::{self, Size};

/// `[resources.fit.OPTION] max_fraction = 0.4, overhead = "64MiB", unit = "postgres"`: the
/// option's value plus `overhead` may be at most `max_fraction` of the memory limit.
#[derive(Debug, Clone)]
pub struct FitDecl {
    pub option: Sp<String>,
    pub max_fraction: Sp<f64>,
    /// Memory the service uses besides the option's value (buffers, the process itself).
    pub overhead: Size,
    pub unit: MemoryUnit,
    /// Where the module says why (its `reason`), shown with the diagnostic.
    pub reason: Option<Sp<String>>,
}

/// How an option's text reads as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUnit {
    /// kiln's size (`512MiB`, `2GiB`, `100M`), or a `size` option as kiln renders it (`2g` = 2 GiB).
    Size,
    /// PostgreSQL memory units: `B`, `kB`, `MB`, `GB`, `TB` (1024-based); a bare number is a
    /// count of 8 kB blocks (the unit of `shared_buffers`).
    Postgres,
    /// A number with an optional binary suffix `K`, `M`, `G`, `T` (either case, optional `B`):
    /// MariaDB/MySQL sizes, the JVM's `-Xmx`, PHP's `memory_limit`, Zabbix sizes.
    Binary,
    /// A decimal number of GiB (MongoDB's `--wiredTigerCacheSizeGB`).
    Gib,
}

impl MemoryUnit {
    pub const NAMES: [&'static str; 4] = ["size", "postgres", "binary", "gib"];

    fn parse(s: &str) -> Result<MemoryUnit, types::TypeError> {
        Ok(match s {
            "size" => MemoryUnit::Size,
            "postgres" => MemoryUnit::Postgres,
            "binary" => MemoryUnit::Binary,
            "gib" => MemoryUnit::Gib,
            _ => return Err(one_of(s, "memory unit", &MemoryUnit::NAMES)),
        })
    }

    pub fn name(self) -> &'static str {
        MemoryUnit::NAMES[self as usize]
    }

    /// The bytes an option's text stands for; `None` when it is not of this form.
    pub fn bytes(self, text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (num, unit) = (&text[..split], text[split..].trim_start());
        let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
        let k = 1024f64;
        let mult = match self {
            MemoryUnit::Size => match unit {
                // kiln's compose form of a `size` option (`2g`), else kiln's own size syntax.
                "b" => 1.0,
                "k" => k,
                "m" => k * k,
                "g" => k * k * k,
                _ => return Size::parse(text).ok().map(|s| s.0),
            },
            MemoryUnit::Postgres => match unit {
                "" => 8.0 * k,
                "B" => 1.0,
                "kB" => k,
                "MB" => k * k,
                "GB" => k * k * k,
                "TB" => k * k * k * k,
                _ => return None,
            },
            MemoryUnit::Binary => match unit.strip_suffix(['b', 'B']).unwrap_or(unit) {
                "" => 1.0,
                "k" | "K" => k,
                "m" | "M" => k * k,
                "g" | "G" => k * k * k,
                "t" | "T" => k * k * k * k,
                _ => return None,
            },
            MemoryUnit::Gib => match unit {
                "" => k * k * k,
                _ => return None,
            },
        };
        let b = n * mult;
        (b < u64::MAX as f64).then_some(b as u64)
    }
}

/// Reads `[resources.fit]`; each entry names one of the module's options.
pub fn read(t: &mut TableReader<'_>, options: &[OptionDecl], sink: &Sink) -> Vec<FitDecl> {
    t.named("fit", |name, mut f| {
        let option = options.iter().find(|o| o.name.value == name.value);
        if option.is_none() {
            let mut d = Diagnostic::error("E0003", format!("`{}` is not an option of this module", name.value))
                .primary(name.span, "no such option");
            if let Some(m) = crate::diag::did_you_mean(&name.value, options.iter().map(|o| o.name.value.as_str())) {
                d = d.help(format!("did you mean `{m}`?"));
            }
            sink.push(d);
        }
        let max_fraction = f.float("max_fraction");
        if let Some(m) = &max_fraction
            && !(m.value > 0.0 && m.value <= 1.0)
        {
            sink.type_error(
                m.span,
                types::TypeError {
                    message: format!("{} is not a fraction of the memory limit", m.value),
                    help: Some("give a number above 0 and at most 1, like `0.4`".into()),
                },
            );
        }
        let overhead = typed(f.str("overhead"), sink, Size::parse).map(|s| s.value).unwrap_or(Size(0));
        let unit = typed(f.str("unit"), sink, MemoryUnit::parse);
        let reason = f.str("reason");
        if max_fraction.is_none() {
            f.missing("max_fraction", "0.4");
        }
        let unit = match (unit, option) {
            (Some(u), _) => Some(u.value),
            (None, Some(o)) if o.ty.value == OptType::Size => Some(MemoryUnit::Size),
            (None, Some(_)) => {
                f.missing("unit", "\"binary\"");
                None
            }
            (None, None) => None,
        };
        f.finish();
        option?;
        Some(FitDecl {
            option: name,
            max_fraction: max_fraction.filter(|m| m.value > 0.0 && m.value <= 1.0)?,
            overhead,
            unit: unit?,
            reason,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::MemoryUnit::*;

    #[test]
    fn units_read_as_their_programs_read_them() {
        assert_eq!(Size.bytes("2g"), Some(2 << 30));
        assert_eq!(Size.bytes("256MiB"), Some(256 << 20));
        assert_eq!(Size.bytes("100M"), Some(100_000_000));
        assert_eq!(Postgres.bytes("1GB"), Some(1 << 30));
        assert_eq!(Postgres.bytes("256MB"), Some(256 << 20));
        assert_eq!(Postgres.bytes("16384"), Some(128 << 20), "a bare number is 8 kB blocks");
        assert_eq!(Postgres.bytes("1gb"), None, "PostgreSQL's units are case-sensitive");
        assert_eq!(Binary.bytes("512m"), Some(512 << 20));
        assert_eq!(Binary.bytes("1G"), Some(1 << 30));
        assert_eq!(Binary.bytes("64MB"), Some(64 << 20));
        assert_eq!(Binary.bytes("1024"), Some(1024));
        assert_eq!(Gib.bytes("0.25"), Some(256 << 20));
        assert_eq!(Gib.bytes("1GB"), None);
    }
}
