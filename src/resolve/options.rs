//! Options: a service's option values typed against its module's declarations (unknown,
//! missing, mistyped and out-of-set values reported at their line).

use super::*;

impl Resolver<'_> {
    /// Options typed against the module's declarations; unknown and missing ones reported.
    pub(super) fn options(&mut self, s: &ServiceDecl, m: &ModuleDecl) -> BTreeMap<String, J> {
        let mut out = BTreeMap::new();
        let mut unknown = false;
        for (name, _) in &s.options {
            if !m.options.iter().any(|o| o.name.value == name.value) {
                unknown = true;
                let mut d = Diagnostic::error("E0021", format!("module `{}` has no option `{}`", m.name.value, name.value))
                    .primary(name.span, "unknown option");
                d = match did_you_mean(&name.value, m.options.iter().map(|o| o.name.value.as_str())) {
                    Some(x) => d.help(format!("did you mean `{x}`?")),
                    None => d.help(format!("`kiln modules show {}` lists its options", m.name.value)),
                };
                self.err(d);
            }
        }
        for o in &m.options {
            let given = s.options.iter().find(|(n, _)| n.value == o.name.value).map(|(_, v)| v);
            let value = match (given, &o.default) {
                (Some(v), _) | (None, Some(v)) => self.option_value(o, v),
                // An unknown option may be this one misspelt: its error is the root cause.
                (None, None) if unknown => None,
                (None, None) if o.from_route.is_some() => self.route_option(s, m, o),
                (None, None) => {
                    let example = o.example.as_ref().map(Node::text).unwrap_or_else(|| "…".into());
                    self.err(
                        Diagnostic::error("E0022", format!("service `{}` needs option `{}`", s.name.value, o.name.value))
                            .primary(s.name.span, format!("`{}` is required by module `{}`", o.name.value, m.name.value))
                            .secondary(o.name.span, "declared here")
                            .help(format!("add `options.{} = {example}`", o.name.value)),
                    );
                    None
                }
            };
            if let Some(v) = value {
                out.insert(o.name.value.clone(), v);
            }
        }
        self.oidc_options(s, m, &mut out);
        out
    }

    /// An option left out that the module takes from the service's first route
    /// (`from_route`): its URL or hostname, or an error when the service has no route.
    fn route_option(&mut self, s: &ServiceDecl, m: &ModuleDecl, o: &OptionDecl) -> Option<J> {
        let part = o.from_route.as_ref()?;
        if let Some(hostname) = self.first_routes.get(&s.name.value) {
            return Some(J::from(part.value.value(hostname)));
        }
        // A route naming no service may be this one's, misspelt: its E0010 (always reported) is
        // the root cause. Counted as an error all the same, so that nothing renders without it.
        if self.route_misnamed() {
            self.deferred += 1;
            return None;
        }
        let example = o.example.as_ref().map(Node::text).unwrap_or_else(|| "…".into());
        self.err(
            Diagnostic::error("E0022", format!("service `{}` needs option `{}` or a route", s.name.value, o.name.value))
                .primary(
                    s.name.span,
                    format!("`{}` is the {} of the service's route for module `{}`", o.name.value, part.value.name(), m.name.value),
                )
                .secondary(part.span, "taken from the route here")
                .help(format!(
                    "add a route to `{}` (`[routes.\"HOSTNAME\"] service = \"{}\"`), or `options.{} = {example}`",
                    s.name.value, s.name.value, o.name.value
                )),
        );
        None
    }

    pub(super) fn option_value(&mut self, o: &OptionDecl, n: &Node) -> Option<J> {
        let expected = |me: &mut Self, what: &str| {
            me.err(
                Diagnostic::error("E0002", format!("option `{}` expects {what}, found {}", o.name.value, n.value.type_name()))
                    .primary(n.span, format!("expected {what}"))
                    .secondary(o.ty.span, "type declared here"),
            );
            None
        };
        let parse_str = |me: &mut Self, f: &dyn Fn(&str) -> Result<String, types::TypeError>| match &n.value {
            Value::Str(s) => match f(s) {
                Ok(v) => Some(J::from(v)),
                Err(e) => {
                    me.err(
                        Diagnostic::error("E0003", e.message).primary(n.span, format!("invalid {}", o.ty.value.name())).with_help(e.help),
                    );
                    None
                }
            },
            _ => None,
        };
        let v = match (o.ty.value, &n.value) {
            (OptType::String, Value::Str(_)) => parse_str(self, &crate::syntax::module::parse_option_string),
            (OptType::Int, Value::Int(i)) => Some(J::from(*i)),
            (OptType::Bool, Value::Bool(b)) => Some(J::from(*b)),
            (OptType::Port, Value::Int(i)) => match types::parse_port(*i) {
                Ok(p) => Some(J::from(p)),
                Err(e) => {
                    self.err(Diagnostic::error("E0003", e.message).primary(n.span, "invalid port").with_help(e.help));
                    None
                }
            },
            (OptType::Duration, Value::Str(_)) => parse_str(self, &|s| types::Duration::parse(s).map(|d| d.to_string())),
            (OptType::Size, Value::Str(_)) => parse_str(self, &|s| types::Size::parse(s).map(|d| d.compose())),
            (OptType::Domain, Value::Str(_)) => parse_str(self, &|s| types::parse_domain(s, true)),
            (OptType::Image, Value::Str(_)) => parse_str(self, &|s| ImageRef::parse(s).map(|i| i.to_string())),
            (OptType::Ip, Value::Str(_)) => parse_str(self, &|s| types::parse_ip(s).map(|i| i.to_string())),
            (OptType::Cidr, Value::Str(_)) => parse_str(self, &|s| types::Cidr::parse(s).map(|i| i.to_string())),
            (OptType::List, Value::Array(items)) => {
                let strs: Option<Vec<String>> =
                    items.iter().map(|i| if let Value::Str(s) = &i.value { Some(s.clone()) } else { None }).collect();
                match strs {
                    Some(v) => {
                        let bad: Vec<_> = items
                            .iter()
                            .zip(&v)
                            .filter_map(|(i, s)| Some((i.span, crate::syntax::module::parse_option_string(s).err()?)))
                            .collect();
                        for (span, e) in bad {
                            self.err(Diagnostic::error("E0003", e.message).primary(span, "invalid list item").with_help(e.help));
                        }
                        Some(jv(&v))
                    }
                    None => return expected(self, "a list of strings"),
                }
            }
            (t, _) => {
                let what = match t {
                    OptType::Int | OptType::Port => "an integer",
                    OptType::Bool => "a boolean",
                    OptType::List => "a list of strings",
                    _ => "a string",
                };
                return expected(self, what);
            }
        };
        if let (Some(v), false) = (&v, o.values.is_empty())
            && let Some(s) = v.as_str()
            && !o.values.iter().any(|x| x.value == s)
        {
            let names: Vec<&str> = o.values.iter().map(|x| x.value.as_str()).collect();
            self.err(
                Diagnostic::error("E0003", format!("`{s}` is not a value of option `{}`", o.name.value))
                    .primary(n.span, "not allowed")
                    .help(match did_you_mean(s, names.iter().copied()) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!("expected one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                    }),
            );
            return None;
        }
        v
    }
}
