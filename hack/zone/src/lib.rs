//! What `sks-zone` shares with its tests: the rule of which properties its
//! answers carry (README: sks-zone). The server itself is the `sks-zone` binary.

pub mod completeness;
