//! `[jobs.NAME]`: commands a service runs on a schedule.

use super::strings::parse_user;
use super::{JobContainer, JobDecl};
use crate::syntax::decode::{Sink, Sp, TableReader, as_str_list, typed};
use crate::syntax::system::one_of;
use crate::types;

/// One `[jobs.NAME]`; `None` without a command.
pub(super) fn job(name: Sp<String>, mut t: TableReader<'_>, sink: &Sink) -> Option<JobDecl> {
    let schedule = typed(t.req_str("schedule", "\"*:0/5\""), sink, types::Calendar::parse);
    let command = match t.node("command") {
        Some(n) => as_str_list(n, sink),
        None => {
            t.missing("command", "[\"php\", \"-f\", \"/var/www/html/cron.php\"]");
            Vec::new()
        }
    };
    let user = typed(t.str("user"), sink, parse_user);
    let container = typed(t.str("container"), sink, |s| match s {
        "exec" => Ok(JobContainer::Exec),
        "run" => Ok(JobContainer::Run),
        _ => Err(one_of(s, "job container", &["exec", "run"])),
    })
    .unwrap_or(Sp::new(JobContainer::Exec, t.span));
    t.finish();
    if command.is_empty() {
        return None;
    }
    Some(JobDecl { schedule: schedule?, command, user, container, name: typed(Some(name), sink, types::parse_ident)? })
}
