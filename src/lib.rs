//! kiln: a compiler for server fleets. Typed TOML in; reproducible, content-addressed
//! artifacts out. See ARCHITECTURE.md for the map.

pub mod backup_repo;
pub mod boot;
pub mod cache;
pub mod check;
pub mod deploy;
pub mod diag;
pub mod diag_json;
pub mod docs;
pub mod eval;
pub mod gc;
pub mod generations;
pub mod interrupt;
pub mod load;
pub mod model;
pub mod module_check;
pub mod pipeline;
pub mod plan;
pub mod plan_model;
pub mod plan_render;
pub mod provider_values;
pub mod push;
pub mod render;
pub mod resolve;
pub mod schema;
pub mod secrets;
pub mod show;
pub mod sops;
pub mod state_backend;
pub mod store;
pub mod syntax;
pub mod template;
pub mod tofu_workdir;
pub mod types;
