//! Evaluate: what the whole system implies and no single declaration says (start order,
//! firewall, published ports, egress, who hears of a failed backup).

pub mod backup_notice;
pub mod cdn;
pub mod egress;
pub mod firewall;
pub mod firewall_layers;
pub mod order;
pub mod tunnel;
