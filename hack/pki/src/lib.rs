//! The zone's certificate authority: client and serving certificates, kubelet CSRs, and kubeconfigs.
//!
//! rcgen builds and signs the certificates, but it cannot write a subject with several O attributes (its
//! `DistinguishedName` keeps one value per attribute type, and kube-apiserver reads a group from every O), nor read
//! a name out of an existing certificate or CSR without its `x509-parser` feature. So the issuer and subject of
//! what rcgen writes are replaced here with DER names built or copied byte for byte, and the result is signed again.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};

/// How long a new CA is valid: ten years.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How far back validity starts, so that hosts whose clock lags a little accept a certificate at once.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// DER of the OID of the commonName attribute (2.5.4.3).
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
/// DER of the OID of the organizationName attribute (2.5.4.10).
const OID_ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
/// DER of the OID of the subjectKeyIdentifier extension (2.5.29.14).
const OID_SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0e];
/// DER of the OID of the subjectAltName extension (2.5.29.17).
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
/// The subjectAltName OID as rcgen takes it.
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
/// DER of the OID of the PKCS#9 extensionRequest attribute (1.2.840.113549.1.9.14), where a CSR asks for SANs.
const OID_EXTENSION_REQUEST: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// DER of a Name with no attributes.
const EMPTY_NAME: &[u8] = &[der::SEQUENCE, 0x00];

/// A certificate authority whose certificate and key are kept in the zone's state.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct CertificateAuthority {
    pub cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs; the key must not.
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA (ECDSA P-256) named `common_name`, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self> {
        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        set_validity(&mut params, CA_VALIDITY)?;
        let cert = params.self_signed(&key).context("signing the CA certificate")?;
        Ok(Self { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A CA from its certificate and key (PEM), e.g. as handed to a control plane.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        KeyPair::from_pem(key_pem).context("parsing the CA key")?;
        ensure!(cert_pem.contains("BEGIN CERTIFICATE"), "the CA certificate is not a PEM certificate");
        Ok(Self { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() })
    }

    /// The CA's private key (PEM), for whatever plays the control plane; never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A client certificate with a fresh key for `user` (CN) in `groups` (one O each), valid for `ttl`.
    pub fn issue_client(&self, user: &str, groups: &[String], ttl: Duration) -> Result<IssuedCert> {
        // The same order as Go's crypto/x509 writes them: O before CN.
        let mut attributes: Vec<(&[u8], &str)> =
            groups.iter().map(|group| (OID_ORGANIZATION, group.as_str())).collect();
        attributes.push((OID_COMMON_NAME, user));
        let mut params = CertificateParams::default();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = new_key()?;
        let cert_pem = self.sign(params, &encode_name(&attributes), &key, ttl)?;
        Ok(IssuedCert { cert_pem, key_pem: key.serialize_pem() })
    }

    /// A serving certificate with a fresh key for `dns_names` and `ips`, named after the first of them.
    pub fn issue_serving(&self, dns_names: &[String], ips: &[IpAddr], ttl: Duration) -> Result<IssuedCert> {
        let common_name = match (dns_names.first(), ips.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => bail!("a serving certificate needs at least one DNS name or IP address"),
        };
        let mut params = CertificateParams::default();
        for name in dns_names {
            let name = Ia5String::try_from(name.as_str()).with_context(|| format!("invalid DNS name {name:?}"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.subject_alt_names.extend(ips.iter().copied().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = new_key()?;
        let cert_pem = self.sign(params, &encode_name(&[(OID_COMMON_NAME, &common_name)]), &key, ttl)?;
        Ok(IssuedCert { cert_pem, key_pem: key.serialize_pem() })
    }

    /// Signs a PEM PKCS#10 CSR as a serving certificate with the CSR's subject, key and SANs; returns the PEM.
    pub fn sign_csr(&self, csr_pem: &str, ttl: Duration) -> Result<String> {
        // The CSR's own signature is not checked (that needs a verifier this crate does not have), so whoever hands
        // it over must be trusted, as with any CSR approved without looking.
        let der = pem_decode(csr_pem, "CERTIFICATE REQUEST")?;
        let csr = Csr::parse(&der).context("parsing the CSR")?;
        let public_key = CsrPublicKey::from_spki(csr.public_key)?;
        let mut params = CertificateParams::default();
        if let Some(sans) = csr.subject_alt_names {
            // Copied as-is rather than through rcgen's SanType, so that no kind of name gets lost.
            let mut extension = CustomExtension::from_oid_content(SUBJECT_ALT_NAME, sans.value.to_vec());
            // RFC 5280 section 4.2.1.6: SANs are critical when the subject is empty.
            extension.set_criticality(sans.critical || csr.subject == EMPTY_NAME);
            params.custom_extensions.push(extension);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, csr.subject, &public_key, ttl)
    }

    /// Issues `params` for `public_key` under `subject` (a DER Name), valid for `ttl`; returns the certificate PEM.
    fn sign(
        &self,
        mut params: CertificateParams,
        subject: &[u8],
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<String> {
        let ca_der = pem_decode(&self.cert_pem, "CERTIFICATE").context("reading the CA certificate")?;
        let ca = CaCert::parse(&ca_der).context("parsing the CA certificate")?;
        let key = KeyPair::from_pem(&self.key_pem).context("reading the CA key")?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(random_serial());
        set_validity(&mut params, ttl)?;
        // The authority key identifier must match the CA's subject key identifier for chain building, so it is
        // copied rather than recomputed.
        params.use_authority_key_identifier_extension = ca.key_id.is_some();
        let mut issuer_params = CertificateParams::default();
        issuer_params.key_identifier_method = KeyIdMethod::PreSpecified(ca.key_id.unwrap_or_default());
        // The names rcgen writes (its placeholder subject, the issuer from `issuer_params`) are replaced below.
        let issuer = Issuer::new(issuer_params, &key);
        let cert = params.signed_by(public_key, &issuer).context("signing the certificate")?;
        let der = replace_names(cert.der(), ca.subject, subject, &key)?;
        Ok(pem_encode("CERTIFICATE", &der))
    }
}

/// A certificate and its private key, as PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs; the key must not.
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

/// A kubeconfig for `user` with `cert` on the cluster `cluster_name` at `server`, as its current context.
pub fn render_kubeconfig(cluster_name: &str, server: &str, ca_pem: &str, user: &str, cert: &IssuedCert) -> String {
    let context = yaml_quote(&format!("{user}@{cluster_name}"));
    let cluster = yaml_quote(cluster_name);
    let user = yaml_quote(user);
    let server = yaml_quote(server);
    let ca_data = BASE64.encode(ca_pem);
    let cert_data = BASE64.encode(&cert.cert_pem);
    let key_data = BASE64.encode(&cert.key_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: {user}
  user:
    client-certificate-data: {cert_data}
    client-key-data: {key_data}
contexts:
- name: {context}
  context:
    cluster: {cluster}
    user: {user}
current-context: {context}
preferences: {{}}
"
    )
}

/// `s` as a YAML double-quoted scalar.
fn yaml_quote(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            // YAML forbids raw control characters and would read these as line breaks or a byte order mark.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(quoted, "\\u{:04x}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A new key pair for signing tokens (kube-apiserver's service-account key):
/// the private key as PKCS#8 PEM (`--service-account-signing-key-file`) and
/// the public key as `PUBLIC KEY` PEM (`--service-account-key-file`, which
/// refuses a private key).
pub fn token_signing_key() -> Result<(String, String)> {
    let key = new_key()?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// A fresh ECDSA P-256 key pair.
fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating a key")
}

/// A random serial number.
fn random_serial() -> SerialNumber {
    // rcgen's default serial is a hash of the public key, which repeats when a kubelet renews with the same key.
    SerialNumber::from(uuid::Uuid::new_v4().as_bytes().to_vec())
}

/// Sets `params` to be valid from a little before now until `ttl` from now.
fn set_validity(params: &mut CertificateParams, ttl: Duration) -> Result<()> {
    let now = Timestamp::now();
    let not_before = now.checked_sub(CLOCK_SKEW).context("validity start out of range")?;
    let not_after = now.checked_add(ttl).context("certificate lifetime out of range")?;
    // rcgen takes a `time::OffsetDateTime` but does not re-export `time`: start from its date helper instead.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since_epoch = |at: Timestamp| {
        u64::try_from(at.as_second()).map(Duration::from_secs).context("certificate validity before 1970")
    };
    params.not_before = epoch + since_epoch(not_before)?;
    params.not_after = epoch + since_epoch(not_after)?;
    Ok(())
}

/// A DER Name with one attribute per relative name, each a (DER OID, UTF8String value) pair, in order.
fn encode_name(attributes: &[(&[u8], &str)]) -> Vec<u8> {
    let mut names = Vec::new();
    for (oid, value) in attributes {
        let attribute = [*oid, &der::encode(der::UTF8_STRING, value.as_bytes())].concat();
        names.extend(der::encode(der::SET, &der::encode(der::SEQUENCE, &attribute)));
    }
    der::encode(der::SEQUENCE, &names)
}

/// Puts `issuer` and `subject` (DER Names) into `cert` (DER) and signs it again with `key`.
fn replace_names(cert: &[u8], issuer: &[u8], subject: &[u8], key: &KeyPair) -> Result<Vec<u8>> {
    let parts = der::children(der::single(cert)?.content)?;
    let [tbs, algorithm, _signature] = parts.as_slice() else { bail!("unexpected certificate structure") };
    let fields = der::children(tbs.content)?;
    // TBSCertificate: version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    ensure!(fields.len() >= 7 && fields[0].tag == der::CONTEXT_0, "unexpected TBSCertificate structure");
    let mut content = Vec::with_capacity(tbs.content.len() + issuer.len() + subject.len());
    for (i, field) in fields.iter().enumerate() {
        content.extend_from_slice(match i {
            3 => issuer,
            5 => subject,
            _ => field.raw,
        });
    }
    let tbs = der::encode(der::SEQUENCE, &content);
    let signature = key.sign(&tbs).context("signing the certificate")?;
    // A BIT STRING's first content byte counts unused bits in the last byte; a signature has none.
    let signature = der::encode(der::BIT_STRING, &[&[0], signature.as_slice()].concat());
    Ok(der::encode(der::SEQUENCE, &[tbs.as_slice(), algorithm.raw, &signature].concat()))
}

/// What issuing needs from the CA certificate.
struct CaCert<'a> {
    /// The DER subject Name, which becomes the issuer of what the CA signs.
    subject: &'a [u8],
    /// The subject key identifier, if the certificate has one.
    key_id: Option<Vec<u8>>,
}

impl<'a> CaCert<'a> {
    /// Reads a DER X.509 certificate.
    fn parse(cert: &'a [u8]) -> Result<Self> {
        let parts = der::children(der::single(cert)?.content)?;
        let tbs = parts.first().context("empty certificate")?;
        let fields = der::children(tbs.content)?;
        ensure!(fields.len() >= 7 && fields[0].tag == der::CONTEXT_0, "not an X.509 v3 certificate");
        let extensions = match fields.iter().find(|field| field.tag == der::CONTEXT_3) {
            Some(extensions) => der::single(extensions.content)?.content,
            None => &[],
        };
        let key_id = match find_extension(extensions, OID_SUBJECT_KEY_IDENTIFIER)? {
            // The extension's value is itself an OCTET STRING holding the identifier.
            Some(extension) => Some(der::single(extension.value)?.content.to_vec()),
            None => None,
        };
        Ok(Self { subject: fields[5].raw, key_id })
    }
}

/// What signing needs from a PKCS#10 CSR.
struct Csr<'a> {
    /// The DER subject Name.
    subject: &'a [u8],
    /// The DER SubjectPublicKeyInfo.
    public_key: &'a [u8],
    /// The requested subjectAltName extension, if any.
    subject_alt_names: Option<Extension<'a>>,
}

impl<'a> Csr<'a> {
    /// Reads a DER CSR.
    fn parse(csr: &'a [u8]) -> Result<Self> {
        let parts = der::children(der::single(csr)?.content)?;
        let info = parts.first().context("empty CSR")?;
        let fields = der::children(info.content)?;
        // CertificationRequestInfo: version, subject, subjectPKInfo, [0] attributes.
        let [_version, subject, public_key, rest @ ..] = fields.as_slice() else { bail!("truncated CSR") };
        let mut subject_alt_names = None;
        if let Some(attributes) = rest.iter().find(|field| field.tag == der::CONTEXT_0) {
            for attribute in der::children(attributes.content)? {
                // Attribute: type, SET OF values.
                let parts = der::children(attribute.content)?;
                if let [kind, values] = parts.as_slice()
                    && kind.raw == OID_EXTENSION_REQUEST
                {
                    for extensions in der::children(values.content)? {
                        if let Some(extension) = find_extension(extensions.content, OID_SUBJECT_ALT_NAME)? {
                            subject_alt_names = Some(extension);
                        }
                    }
                }
            }
        }
        Ok(Self { subject: subject.raw, public_key: public_key.raw, subject_alt_names })
    }
}

/// One X.509 extension.
struct Extension<'a> {
    critical: bool,
    /// The content of extnValue's OCTET STRING: the extension's own DER.
    value: &'a [u8],
}

/// The extension with DER OID `oid` among `extensions`, the content of a DER Extensions SEQUENCE.
fn find_extension<'a>(extensions: &'a [u8], oid: &[u8]) -> Result<Option<Extension<'a>>> {
    for extension in der::children(extensions)? {
        // Extension: extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING.
        let parts = der::children(extension.content)?;
        let (id, critical, value) = match parts.as_slice() {
            [id, value] => (id, false, value),
            [id, critical, value] => (id, critical.content != [0], value),
            _ => bail!("unexpected extension structure"),
        };
        if id.raw == oid {
            ensure!(value.tag == der::OCTET_STRING, "extension value is not an OCTET STRING");
            return Ok(Some(Extension { critical, value: value.content }));
        }
    }
    Ok(None)
}

/// A public key taken from a CSR, in the form rcgen writes into a certificate.
struct CsrPublicKey {
    /// The subjectPublicKey bits.
    raw: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl CsrPublicKey {
    /// Reads a DER SubjectPublicKeyInfo of a kind rcgen writes back byte for byte.
    fn from_spki(spki: &[u8]) -> Result<Self> {
        let parts = der::children(der::single(spki)?.content)?;
        let [_algorithm, key] = parts.as_slice() else { bail!("unexpected SubjectPublicKeyInfo structure") };
        let Some((&0, raw)) = key.content.split_first().filter(|_| key.tag == der::BIT_STRING) else {
            bail!("unexpected subjectPublicKey encoding");
        };
        // Only the algorithm identifier in the SubjectPublicKeyInfo matters here, and all RSA algorithms write the
        // same one.
        for algorithm in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384, &PKCS_ED25519, &PKCS_RSA_SHA256] {
            let key = Self { raw: raw.to_vec(), algorithm };
            if key.subject_public_key_info() == spki {
                return Ok(key);
            }
        }
        bail!("unsupported public key algorithm in the CSR")
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// `der` as a PEM block labelled `label`.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let base64 = BASE64.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so any split is on a char boundary.
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    let _ = writeln!(pem, "-----END {label}-----");
    pem
}

/// The DER in the first PEM block labelled `label` in `pem`.
fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).with_context(|| format!("no {label} PEM block"))? + begin.len();
    let len = pem[start..].find(&end).with_context(|| format!("unterminated {label} PEM block"))?;
    let base64: String = pem[start..start + len].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(base64).with_context(|| format!("invalid base64 in the {label} PEM block"))
}

/// Just enough DER to take certificates and CSRs apart and put them back together.
mod der {
    use anyhow::{Result, bail, ensure};

    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// Constructed, context-specific tag 0.
    pub const CONTEXT_0: u8 = 0xa0;
    /// Constructed, context-specific tag 3.
    pub const CONTEXT_3: u8 = 0xa3;

    /// One DER element.
    pub struct Tlv<'a> {
        pub tag: u8,
        /// The whole element: tag, length and content.
        pub raw: &'a [u8],
        pub content: &'a [u8],
    }

    /// The first element of `input` and what follows it.
    pub fn parse(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
        let [tag, first, rest @ ..] = input else { bail!("truncated DER") };
        // No tag numbers above 30 occur in what is parsed here.
        ensure!(tag & 0x1f != 0x1f, "unsupported multi-byte DER tag");
        let (len, rest) = if first & 0x80 == 0 {
            (usize::from(*first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            ensure!((1..=4).contains(&count) && rest.len() >= count, "unsupported DER length");
            let (bytes, rest) = rest.split_at(count);
            (bytes.iter().fold(0, |len, &byte| len << 8 | usize::from(byte)), rest)
        };
        ensure!(rest.len() >= len, "truncated DER");
        let header = input.len() - rest.len();
        let (raw, rest) = input.split_at(header + len);
        Ok((Tlv { tag: *tag, raw, content: &raw[header..] }, rest))
    }

    /// The one element that `input` consists of.
    pub fn single(input: &[u8]) -> Result<Tlv<'_>> {
        let (tlv, rest) = parse(input)?;
        ensure!(rest.is_empty(), "trailing data after DER");
        Ok(tlv)
    }

    /// The elements that `input` consists of, such as the content of a SEQUENCE.
    pub fn children(mut input: &[u8]) -> Result<Vec<Tlv<'_>>> {
        let mut children = Vec::new();
        while !input.is_empty() {
            let (tlv, rest) = parse(input)?;
            children.push(tlv);
            input = rest;
        }
        Ok(children)
    }

    /// The element with `tag` and `content`.
    pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// The DER subject and issuer Names of a PEM certificate.
    fn names(cert_pem: &str) -> (Vec<u8>, Vec<u8>) {
        let der = pem_decode(cert_pem, "CERTIFICATE").unwrap();
        let parts = der::children(der::single(&der).unwrap().content).unwrap();
        let fields = der::children(parts[0].content).unwrap();
        (fields[5].raw.to_vec(), fields[3].raw.to_vec())
    }

    #[test]
    fn generates_a_ca() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(ca.key_pem.contains("-----BEGIN PRIVATE KEY-----"));
        let (subject, issuer) = names(&ca.cert_pem);
        assert_eq!(subject, issuer);
        assert_eq!(subject, encode_name(&[(OID_COMMON_NAME, "test-ca")]));
        let der = pem_decode(&ca.cert_pem, "CERTIFICATE").unwrap();
        assert_eq!(CaCert::parse(&der).unwrap().key_id.map(|id| id.len()), Some(20));
    }

    #[test]
    fn issues_a_client_certificate() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let groups = ["system:masters".to_owned(), "team-a".to_owned()];
        let cert = ca.issue_client("admin", &groups, DAY).unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        KeyPair::from_pem(&cert.key_pem).unwrap();
        let (subject, issuer) = names(&cert.cert_pem);
        let expected = encode_name(&[
            (OID_ORGANIZATION, "system:masters"),
            (OID_ORGANIZATION, "team-a"),
            (OID_COMMON_NAME, "admin"),
        ]);
        assert_eq!(subject, expected);
        assert_eq!(issuer, names(&ca.cert_pem).0);
    }

    #[test]
    fn issues_a_serving_certificate() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let dns = ["kubernetes.default.svc".to_owned(), "localhost".to_owned()];
        let ips = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let cert = ca.issue_serving(&dns, &ips, DAY).unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(names(&cert.cert_pem).0, encode_name(&[(OID_COMMON_NAME, "kubernetes.default.svc")]));

        let cert = ca.issue_serving(&[], &ips, DAY).unwrap();
        assert_eq!(names(&cert.cert_pem).0, encode_name(&[(OID_COMMON_NAME, "127.0.0.1")]));
        assert!(ca.issue_serving(&[], &[], DAY).is_err());
        assert!(ca.issue_serving(&["bad\u{e9}.example".to_owned()], &[], DAY).is_err());
    }

    #[test]
    fn signs_a_csr_as_is() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["node-1".to_owned(), "10.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
        params.distinguished_name.push(DnType::CommonName, "system:node:node-1");
        let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let csr_der = pem_decode(&csr_pem, "CERTIFICATE REQUEST").unwrap();
        let csr = Csr::parse(&csr_der).unwrap();

        let cert_pem = ca.sign_csr(&csr_pem, DAY).unwrap();
        let cert_der = pem_decode(&cert_pem, "CERTIFICATE").unwrap();
        let parts = der::children(der::single(&cert_der).unwrap().content).unwrap();
        let fields = der::children(parts[0].content).unwrap();
        assert_eq!(fields[3].raw, names(&ca.cert_pem).0);
        assert_eq!(fields[5].raw, csr.subject);
        assert_eq!(fields[6].raw, csr.public_key);
        let extensions = der::single(fields[7].content).unwrap().content;
        let sans = find_extension(extensions, OID_SUBJECT_ALT_NAME).unwrap().unwrap();
        assert_eq!(sans.value, csr.subject_alt_names.unwrap().value);
        assert!(!sans.critical);

        assert!(ca.sign_csr("not a CSR", DAY).is_err());
    }

    #[test]
    fn renders_a_kubeconfig() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let cert = ca.issue_client("admin", &["system:masters".to_owned()], DAY).unwrap();
        let kubeconfig = render_kubeconfig("test", "https://127.0.0.1:6443", &ca.cert_pem, "admin", &cert);
        assert!(kubeconfig.starts_with("apiVersion: v1\nkind: Config\n"));
        assert!(kubeconfig.contains(&format!("certificate-authority-data: {}\n", BASE64.encode(&ca.cert_pem))));
        assert!(kubeconfig.contains(&format!("client-certificate-data: {}\n", BASE64.encode(&cert.cert_pem))));
        assert!(kubeconfig.contains(&format!("client-key-data: {}\n", BASE64.encode(&cert.key_pem))));
        assert!(kubeconfig.contains("server: \"https://127.0.0.1:6443\"\n"));
        assert!(kubeconfig.contains("\ncurrent-context: \"admin@test\"\n"));

        let odd = render_kubeconfig("a\"b\\c", "https://x", &ca.cert_pem, "u\nv", &cert);
        assert!(odd.contains("- name: \"a\\\"b\\\\c\"\n"));
        assert!(odd.contains("current-context: \"u\\nv@a\\\"b\\\\c\"\n"));
    }

    #[test]
    fn quotes_yaml() {
        assert_eq!(yaml_quote("plain"), "\"plain\"");
        assert_eq!(yaml_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(yaml_quote("\u{1}\u{2028}\t"), "\"\\u0001\\u2028\\t\"");
    }

    #[test]
    fn ca_survives_serde() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let json = serde_json::to_string(&ca).unwrap();
        let restored: CertificateAuthority = serde_json::from_str(&json).unwrap();
        assert_eq!(restored.cert_pem, ca.cert_pem);
        let cert = restored.issue_client("admin", &[], DAY).unwrap();
        assert_eq!(names(&cert.cert_pem).1, names(&ca.cert_pem).0);
    }

    #[test]
    fn debug_hides_keys() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let cert = ca.issue_client("admin", &[], DAY).unwrap();
        for debug in [format!("{ca:?}"), format!("{cert:?}")] {
            assert!(!debug.contains("PRIVATE KEY"), "{debug}");
            assert!(debug.contains("<redacted>"));
            assert!(debug.contains("BEGIN CERTIFICATE"));
        }
    }

    #[test]
    fn encodes_der_lengths() {
        for len in [0, 0x7f, 0x80, 0xff, 0x100, 0x1_0000] {
            let content = vec![7; len];
            let encoded = der::encode(der::OCTET_STRING, &content);
            let tlv = der::single(&encoded).unwrap();
            assert_eq!((tlv.tag, tlv.content.len(), tlv.raw.len()), (der::OCTET_STRING, len, encoded.len()));
        }
        assert!(der::single(&[der::SEQUENCE, 0x05, 0x00]).is_err());
        assert!(der::single(&[der::SEQUENCE, 0x00, 0x00]).is_err());
    }
}
