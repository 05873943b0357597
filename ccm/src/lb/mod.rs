//! LoadBalancer Services as Network Load Balancers: the annotations (parsed in
//! one place), the NLB they ask for, its owner, its target pool, the writes
//! that converge it, and the controller that applies them.

pub mod annotations;
pub mod controller;
pub mod desired;
pub mod node_pools;
pub mod owner;
pub mod plan;
pub mod pool;
