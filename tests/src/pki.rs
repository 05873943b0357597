//! Certificates for a test cluster: serving, client and front-proxy CAs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sks_pki::{CertificateAuthority, IssuedCert};

const DAY: Duration = Duration::from_secs(86400);

/// The CAs and certificates of one test setup, written to a directory.
pub struct TestPki {
    /// Signs serving certificates.
    pub serving_ca: CertificateAuthority,
    /// Signs user client certificates.
    pub client_ca: CertificateAuthority,
    /// Signs the front-proxy client certificate.
    pub proxy_ca: CertificateAuthority,
    dir: PathBuf,
}

impl TestPki {
    /// New CAs; files go to `dir`.
    pub fn new(dir: &Path) -> Self {
        TestPki {
            serving_ca: CertificateAuthority::generate("test serving CA").unwrap(),
            client_ca: CertificateAuthority::generate("test client CA").unwrap(),
            proxy_ca: CertificateAuthority::generate("test front-proxy CA").unwrap(),
            dir: dir.to_owned(),
        }
    }

    /// Writes `contents` to `name` in the directory and returns the path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A serving certificate for localhost and 127.0.0.1 (and `extra_dns`): (cert path, key path).
    pub fn serving(&self, name: &str, extra_dns: &[&str]) -> (PathBuf, PathBuf) {
        let mut dns = vec!["localhost".to_owned()];
        dns.extend(extra_dns.iter().map(std::string::ToString::to_string));
        let cert = self.serving_ca.issue_serving(&dns, &["127.0.0.1".parse().unwrap()], DAY).unwrap();
        (self.write(&format!("{name}.crt"), &cert.cert_pem), self.write(&format!("{name}.key"), &cert.key_pem))
    }

    /// A client certificate of `ca` for `user` in `groups`.
    pub fn client(ca: &CertificateAuthority, user: &str, groups: &[&str]) -> IssuedCert {
        let groups: Vec<String> = groups.iter().map(std::string::ToString::to_string).collect();
        ca.issue_client(user, &groups, DAY).unwrap()
    }

    /// A kubeconfig for `server` trusting the serving CA, authenticating with `cert`.
    pub fn kubeconfig(&self, name: &str, server: &str, user: &str, cert: &IssuedCert) -> PathBuf {
        let yaml = sks_pki::render_kubeconfig("test", server, &self.serving_ca.cert_pem, user, cert);
        self.write(name, &yaml)
    }
}
