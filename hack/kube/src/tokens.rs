//! Static bearer tokens, in kube-apiserver's `--token-auth-file` format:
//! `token,user,uid,"group1,group2"` per line.

use std::collections::HashMap;

use sks_rest::authn::{TokenReviewer, UserInfo};
use sks_rest::storage::BoxFuture;

/// Tokens and their users.
#[derive(Default)]
pub struct StaticTokens(HashMap<String, UserInfo>);

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticTokens({} tokens)", self.0.len())
    }
}

impl StaticTokens {
    /// Parses the file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut out = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            anyhow::ensure!(fields.len() >= 3, "line {}: expected token,user,uid[,\"groups\"]", n + 1);
            let groups = fields
                .get(3)
                .map(|g| g.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            let user = UserInfo {
                name: fields[1].clone(),
                uid: Some(fields[2].clone()).filter(|u| !u.is_empty()),
                groups,
                extra: Default::default(),
            };
            out.insert(fields[0].clone(), user);
        }
        Ok(StaticTokens(out))
    }

    /// The user of `token`.
    pub fn user(&self, token: &str) -> Option<UserInfo> {
        self.0.get(token).cloned()
    }
}

impl TokenReviewer for StaticTokens {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        let user = self.user(token);
        Box::pin(async move { Ok(user) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_token_auth_file_format() {
        let t = StaticTokens::parse("# comment\nabc,alice,1,\"devs,ops\"\nxyz,bob,2\n").unwrap();
        let alice = t.user("abc").unwrap();
        assert_eq!((alice.name.as_str(), alice.groups.clone()), ("alice", vec!["devs".to_string(), "ops".to_string()]));
        assert!(t.user("xyz").unwrap().groups.is_empty());
        assert!(t.user("nope").is_none());
        assert!(StaticTokens::parse("onlytoken").is_err());
    }
}
