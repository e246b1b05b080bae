//! One module per group of commands; each function takes parsed arguments and returns the
//! exit code.

pub(crate) mod boot;
pub(crate) mod build;
pub(crate) mod deploy;
pub(crate) mod gc;
pub(crate) mod plan;
pub(crate) mod reference;
pub(crate) mod rollback;
pub(crate) mod secrets;
pub(crate) mod transfer;
