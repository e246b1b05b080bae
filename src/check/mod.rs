//! Check: policy and compatibility rules over the resolved model, one rule per file, each with
//! a stable id and an explanation (`kiln explain ID`).

mod edge_on_private_host;
mod port_conflict;
mod unpinned_image;

use crate::diag::Diagnostic;
use crate::load::Inputs;
use crate::model::System;

pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub explanation: &'static str,
    pub check: fn(&System, &Inputs) -> Vec<Diagnostic>,
}

pub const RULES: &[&Rule] = &[&edge_on_private_host::RULE, &port_conflict::RULE, &unpinned_image::RULE];

pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

pub fn run(sys: &System, inputs: &Inputs) -> Vec<Diagnostic> {
    RULES.iter().flat_map(|r| (r.check)(sys, inputs)).collect()
}
