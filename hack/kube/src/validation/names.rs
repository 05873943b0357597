//! The string formats kinds check their fields against: apimachinery's,
//! from the one copy in `sks_rest::validation`.

pub use sks_rest::validation::{dns1123_label, dns1123_subdomain, label_value, port_name, port_number, qualified_name};

/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX: usize = 63;
