//! OpenSSH's known_hosts format, enough to check a server's host key as `ssh` does with
//! `StrictHostKeyChecking yes`: plain host patterns (with `*`, `?` and `!` negation), the
//! `[host]:port` form for other ports than 22, hashed names (`|1|salt|hmac`, as written by
//! `ssh-keygen -H` and `HashKnownHosts`), `@revoked` keys; `@cert-authority` lines are not
//! trusted for plain host keys.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest;

/// What known_hosts says of a server's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A line for this host holds this key.
    Trusted,
    /// Lines for this host hold other keys of the same type: the key changed.
    Changed,
    /// No line for this host holds a key of this type.
    Unknown,
    /// The key is marked `@revoked`.
    Revoked,
}

/// The name known_hosts stores for `host` at `port`.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's fingerprint of a raw public key: `SHA256:` and unpadded base64.
pub fn fingerprint(key: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(sha2::Sha256::digest(key))
    )
}

/// Checks `key` (raw, as the server sent it, of type `key_type` such as `ssh-ed25519`)
/// for `host`:`port` against the text of a known_hosts file.
pub fn verify(
    known_hosts: &str,
    host: &str,
    port: u16,
    key_type: &str,
    key: &[u8],
) -> HostKeyVerdict {
    let name = host_name(host, port);
    let mut trusted = false;
    let mut changed = false;
    for line in known_hosts.lines() {
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if !entry.matches_host(&name) || entry.marker == Some("@cert-authority") {
            continue;
        }
        let same_key = entry.key_type == key_type && entry.key.as_deref() == Some(key);
        match (entry.marker, same_key) {
            (Some("@revoked"), true) => return HostKeyVerdict::Revoked,
            (Some(_), _) => {}
            (None, true) => trusted = true,
            (None, false) => changed |= entry.key_type == key_type,
        }
    }
    match (trusted, changed) {
        (true, _) => HostKeyVerdict::Trusted,
        (false, true) => HostKeyVerdict::Changed,
        (false, false) => HostKeyVerdict::Unknown,
    }
}

struct Entry<'a> {
    marker: Option<&'a str>,
    patterns: &'a str,
    key_type: &'a str,
    key: Option<Vec<u8>>,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let marker = if first.starts_with('@') {
            let marker = first;
            first = fields.next()?;
            Some(marker)
        } else {
            None
        };
        let key_type = fields.next()?;
        let key = fields.next().and_then(|b64| STANDARD.decode(b64).ok());
        Some(Entry {
            marker,
            patterns: first,
            key_type,
            key,
        })
    }

    fn matches_host(&self, name: &str) -> bool {
        if let Some(hashed) = self.patterns.strip_prefix("|1|") {
            return matches_hashed(hashed, name);
        }
        let mut matched = false;
        for pattern in self.patterns.split(',') {
            match pattern.strip_prefix('!') {
                Some(negated) if wildcard_match(negated, name) => return false,
                Some(_) => {}
                None => matched |= wildcard_match(pattern, name),
            }
        }
        matched
    }
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed by the salt.
fn matches_hashed(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's patterns: `*` any run of characters, `?` one; case-insensitive.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, at)) => {
                    p = star + 1;
                    n = at + 1;
                    backtrack = Some((star, at + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"\x00\x00\x00\x0bssh-ed25519 first key";
    const OTHER: &[u8] = b"\x00\x00\x00\x0bssh-ed25519 other key";

    fn line(hosts: &str, key: &[u8]) -> String {
        format!("{hosts} ssh-ed25519 {}\n", STANDARD.encode(key))
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn plain_entries_with_and_without_port() {
        let file = line("git.example.com,10.0.0.1", KEY) + &line("[git.example.com]:2222", OTHER);
        assert_eq!(
            verify(&file, "git.example.com", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&file, "10.0.0.1", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&file, "git.example.com", 2222, "ssh-ed25519", OTHER),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&file, "git.example.com", 2222, "ssh-ed25519", KEY),
            HostKeyVerdict::Changed
        );
        assert_eq!(
            verify(&file, "elsewhere", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            verify(&file, "git.example.com", 22, "ssh-rsa", KEY),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn hashed_entries() {
        let file = line(&hashed("[127.0.0.1]:2200", b"0123456789abcdefghij"), KEY);
        assert_eq!(
            verify(&file, "127.0.0.1", 2200, "ssh-ed25519", KEY),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&file, "127.0.0.1", 2200, "ssh-ed25519", OTHER),
            HostKeyVerdict::Changed
        );
        assert_eq!(
            verify(&file, "127.0.0.1", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn wildcards_negation_and_markers() {
        let file = line("*.example.com,!evil.example.com", KEY)
            + &format!("@revoked * ssh-ed25519 {}\n", STANDARD.encode(OTHER))
            + &format!(
                "@cert-authority *.corp ssh-ed25519 {}\n",
                STANDARD.encode(KEY)
            )
            + "# a comment\n\ngarbage\n";
        assert_eq!(
            verify(&file, "git.example.com", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&file, "evil.example.com", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            verify(&file, "git.example.com", 22, "ssh-ed25519", OTHER),
            HostKeyVerdict::Revoked
        );
        assert_eq!(
            verify(&file, "a.corp", 22, "ssh-ed25519", KEY),
            HostKeyVerdict::Unknown
        );
        assert!(wildcard_match("h?st*", "HOST-1"));
        assert!(!wildcard_match("h?st", "hst"));
    }

    #[test]
    fn fingerprints_as_openssh_prints_them() {
        let fp = fingerprint(KEY);
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
    }
}
