//! Kubelet serving certificate approval: a CSR is approved only when every
//! claim in it can be tied to a running instance of this cluster's nodepools.
//! The decision is pure; [`controller`] applies it.

pub mod controller;

use sks_keys::KUBELET_SERVING_SIGNER;
use std::net::IpAddr;

use orchestrator::model::{Instance, InstanceState};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;

/// What to do with a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve it.
    Approve,
    /// Deny it, with the check that failed.
    Deny(String),
    /// Not ours to decide (another signer, or already decided).
    Ignore,
    /// Not yet decidable: the instance is still booting, so ask again later
    /// rather than deny a kubelet that will be legitimate in a moment.
    Wait(String),
}

/// The parts of a CSR object the decision reads.
#[derive(Debug, Clone, Default)]
pub struct CsrFacts {
    /// `spec.signerName`.
    pub signer: String,
    /// `spec.username` (set by the API server from the requester).
    pub username: String,
    /// `spec.groups`.
    pub groups: Vec<String>,
    /// `spec.usages`.
    pub usages: Vec<String>,
    /// The PEM of `spec.request` (decoded from base64).
    pub request_pem: String,
    /// Whether it already has an Approved, Denied or Failed condition.
    pub decided: bool,
}

const ALLOWED_USAGES: &[&str] = &["server auth", "digital signature", "key encipherment"];

/// The subject, SANs and usages a PKCS#10 request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    /// Common names in the subject.
    pub common_names: Vec<String>,
    /// Organizations in the subject.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// URI and email SANs, which a kubelet never needs.
    pub other_sans: Vec<String>,
}

/// Parses a PEM PKCS#10 request and checks its self-signature.
pub fn parse_request(pem: &str) -> Result<Requested, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not a PEM block: {e}"))?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(format!("PEM block is a {:?}, not a CERTIFICATE REQUEST", block.label));
    }
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    // Go's x509.ParseCertificateRequest, which the signer uses, refuses these too.
    if !rest.is_empty() {
        return Err(format!("{} bytes of trailing data after the PKCS#10 request", rest.len()));
    }
    csr.verify_signature().map_err(|e| format!("the request's signature does not verify: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut out = Requested {
        common_names: subject.iter_common_name().filter_map(|c| c.as_str().ok().map(str::to_owned)).collect(),
        organizations: subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_owned)).collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => out.ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                        16 => out.ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                        _ => out.other_sans.push(format!("IP of {} bytes", b.len())),
                    },
                    other => out.other_sans.push(format!("{other:?}")),
                }
            }
        }
    }
    Ok(out)
}

/// Decides a CSR given the running instances of this cluster's nodepools
/// (`instance_of(name)` finds one by name, case-insensitively).
pub fn decide(facts: &CsrFacts, instance_of: impl Fn(&str) -> Option<Instance>) -> Decision {
    if facts.signer != KUBELET_SERVING_SIGNER || facts.decided {
        return Decision::Ignore;
    }
    let Some(node) = facts.username.strip_prefix("system:node:").filter(|n| !n.is_empty()) else {
        return Decision::Deny(format!("requester {:?} is not a node (system:node:<name>)", facts.username));
    };
    if !facts.groups.iter().any(|g| g == "system:nodes") {
        return Decision::Deny(format!("requester {} is not in group system:nodes", facts.username));
    }
    if let Some(bad) = facts.usages.iter().find(|u| !ALLOWED_USAGES.contains(&u.as_str())) {
        return Decision::Deny(format!(
            "usage {bad:?} is not allowed; only server auth, digital signature and key encipherment"
        ));
    }
    if !facts.usages.iter().any(|u| u == "server auth") {
        return Decision::Deny("usages do not include server auth".into());
    }
    let req = match parse_request(&facts.request_pem) {
        Ok(r) => r,
        Err(e) => return Decision::Deny(format!("the request does not parse: {e}")),
    };
    let expected_cn = format!("system:node:{node}");
    if req.common_names != [expected_cn.clone()] || req.organizations != ["system:nodes"] {
        return Decision::Deny(format!(
            "subject must be CN={expected_cn}, O=system:nodes; got CN={:?}, O={:?}",
            req.common_names, req.organizations
        ));
    }
    if !req.other_sans.is_empty() {
        return Decision::Deny(format!("URI and email SANs are not allowed: {:?}", req.other_sans));
    }
    let Some(instance) = instance_of(node) else {
        return Decision::Deny(format!("no instance named {node} in this cluster's nodepools"));
    };
    if instance.state == InstanceState::Starting {
        return Decision::Wait(format!("instance {} ({}) is still starting", instance.name, instance.id));
    }
    if instance.state != InstanceState::Running {
        return Decision::Deny(format!(
            "instance {} ({}) is {}, not running",
            instance.name, instance.id, instance.state
        ));
    }
    if let Some(dns) = req.dns.iter().find(|d| !d.eq_ignore_ascii_case(&instance.name) && !d.eq_ignore_ascii_case(node))
    {
        return Decision::Deny(format!("DNS SAN {dns:?} is neither the node's nor the instance's name"));
    }
    let allowed: Vec<IpAddr> =
        instance.public_ip.map(IpAddr::V4).into_iter().chain(instance.ipv6_address.map(IpAddr::V6)).collect();
    if let Some(ip) = req.ips.iter().find(|ip| !allowed.contains(ip)) {
        return Decision::Deny(format!("IP SAN {ip} is not an address of instance {} ({allowed:?})", instance.name));
    }
    Decision::Approve
}
