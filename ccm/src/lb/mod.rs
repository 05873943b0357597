//! LoadBalancer Services as Network Load Balancers (in progress: the
//! annotation parser is done; the controller follows).

pub mod annotations;
