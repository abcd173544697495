//! What an operator calls: the admin listener of both roles, dead-letter tools shared by the
//! CLI and the admin API, and the Redis durability check.

pub mod admin;
pub mod dlq;
pub mod durability;
