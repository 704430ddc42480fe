//! Which SSH host keys the SFTP client trusts: OpenSSH's rules, set by
//! environment variables, refusing what nothing vouches for.
//!
//! - `FLOW_SFTP_HOST_KEYS`: pinned SHA-256 fingerprints, comma-separated.
//!   `HOST=SHA256:…` pins a key for `HOST` (port 22), `HOST:PORT` or
//!   `[HOST]:PORT` (IPv6: `[::1]:2222`, `[::1]` for port 22); a bare
//!   `SHA256:…` applies to every server without pins of its own. A server
//!   with pins is checked against them only (any of them: several allow a
//!   key rotation), not against known_hosts files.
//! - known_hosts files (OpenSSH format, hashed names allowed, `[host]:port`
//!   for ports other than 22): `FLOW_SFTP_KNOWN_HOSTS` names one, which must
//!   exist; otherwise `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`,
//!   as `ssh` reads them, when they exist. A key listed for the host is
//!   trusted; another key of the same type listed for it is a changed key.
//! - `FLOW_SFTP_TRUST_ON_FIRST_USE=1` (`true`, `yes`): a host with no key in
//!   the known_hosts files has the key it shows first appended to
//!   `FLOW_SFTP_KNOWN_HOSTS` (else `~/.ssh/known_hosts`), created with mode
//!   0600, and logged as a warning; from then on it is checked like any
//!   listed key (OpenSSH's `StrictHostKeyChecking accept-new`).
//!
//! Anything else is refused, naming the key's fingerprint and these three
//! ways to trust it. Settings that do not parse refuse every connection
//! with the reason (a bad pin must not silently fall back to something
//! weaker).

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::{HashAlg, PublicKey};

use super::{ErrorKind, SftpError, SftpUrl};
use crate::core::sync::lock;

/// Names a known_hosts file to verify host keys with (instead of the defaults).
pub(crate) const KNOWN_HOSTS_ENV: &str = "FLOW_SFTP_KNOWN_HOSTS";
/// Pinned host key fingerprints.
pub(crate) const HOST_KEYS_ENV: &str = "FLOW_SFTP_HOST_KEYS";
/// Opts in to trust on first use.
pub(crate) const TOFU_ENV: &str = "FLOW_SFTP_TRUST_ON_FIRST_USE";
/// The system-wide known_hosts file `ssh` reads.
const GLOBAL_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// A pinned fingerprint, for one server or (`server: None`) for all.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    /// Lowercase host and port.
    server: Option<(String, u16)>,
    fingerprint: Fingerprint,
}

/// How host keys are trusted (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    pins: Vec<Pin>,
    /// The known_hosts files to look in.
    known_hosts: Vec<PathBuf>,
    /// Whether `known_hosts` was named by [`KNOWN_HOSTS_ENV`] (then it must exist).
    named: bool,
    /// Where trust on first use records keys; `None`: it is off.
    record_into: Option<PathBuf>,
    /// Why the settings are unusable: every connection is refused with it.
    invalid: Option<String>,
}

impl Trust {
    /// The settings from the environment (`var`) and the home directory.
    pub(crate) fn from_env(var: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Trust {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut trust = Trust::default();
        let user_file = home.map(|h| h.join(".ssh").join("known_hosts"));
        match var(KNOWN_HOSTS_ENV) {
            Some(path) => {
                trust.known_hosts = vec![PathBuf::from(path)];
                trust.named = true;
            }
            None => {
                trust.known_hosts = user_file.iter().cloned().collect();
                trust.known_hosts.push(PathBuf::from(GLOBAL_KNOWN_HOSTS));
            }
        }
        let mut problems = Vec::new();
        if let Some(pins) = var(HOST_KEYS_ENV) {
            match parse_pins(&pins) {
                Ok(pins) => trust.pins = pins,
                Err(e) => problems.push(format!("{HOST_KEYS_ENV}: {e}")),
            }
        }
        match var(TOFU_ENV)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("0" | "false" | "no") => {}
            Some("1" | "true" | "yes") => {
                trust.record_into = if trust.named {
                    trust.known_hosts.first().cloned()
                } else {
                    user_file
                };
                if trust.record_into.is_none() {
                    problems.push(format!(
                        "{TOFU_ENV} needs a file to record keys in: set {KNOWN_HOSTS_ENV} (there is no home directory)"
                    ));
                }
            }
            Some(other) => problems.push(format!(
                "{TOFU_ENV} must be 1, true, yes, 0, false or no, not `{other}`"
            )),
        }
        if !problems.is_empty() {
            trust.invalid = Some(problems.join("; "));
        }
        trust
    }

    /// The settings of this process.
    pub(crate) fn from_process() -> Trust {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        Trust::from_env(&|name| std::env::var(name).ok(), home.as_deref())
    }

    /// The pins that apply to `server`: its own, else those for every server.
    fn pins_for(&self, server: &SftpUrl) -> Vec<&Fingerprint> {
        let host = server.host.to_ascii_lowercase();
        let of = |own: bool| -> Vec<&Fingerprint> {
            self.pins
                .iter()
                .filter(|pin| match &pin.server {
                    None => !own,
                    Some((h, port)) => own && *h == host && *port == server.port,
                })
                .map(|pin| &pin.fingerprint)
                .collect()
        };
        let own = of(true);
        if own.is_empty() {
            of(false)
        } else {
            own
        }
    }

    /// Whether `key` of `server` is trusted; an [`ErrorKind::HostKey`]
    /// error saying why not otherwise.
    pub(crate) fn check(&self, server: &SftpUrl, key: &PublicKey) -> Result<(), SftpError> {
        let refuse = |why: String| SftpError::new(ErrorKind::HostKey, server, why);
        if let Some(why) = &self.invalid {
            return Err(refuse(format!("host keys cannot be checked: {why}")));
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let pins = self.pins_for(server);
        if !pins.is_empty() {
            if pins.contains(&&fingerprint) {
                return Ok(());
            }
            return Err(refuse(format!(
                "host key {fingerprint} is not the one pinned for {} in {HOST_KEYS_ENV}",
                host_pattern(server)
            )));
        }
        // One check-and-record at a time, so that concurrent first
        // connections record one key, and the others check against it.
        static RECORDING: Mutex<()> = Mutex::new(());
        let _recording = self.record_into.as_ref().map(|_| lock(&RECORDING));
        match self.lookup(server, key).map_err(refuse)? {
            Listed::Yes => Ok(()),
            Listed::Changed(file, line) => Err(refuse(format!(
                "host key {fingerprint} differs from the one on line {line} of {} (the server's key changed, or someone is in the way): if the change is expected, remove that line",
                file.display()
            ))),
            Listed::OtherType(file, line) => Err(refuse(format!(
                "host key {fingerprint} ({}) is not listed in {}, which has a key of another type for this server on line {line}: add this one if the server really has it",
                key.algorithm(),
                file.display()
            ))),
            Listed::No => match &self.record_into {
                Some(file) => self.record(server, key, file),
                None => Err(refuse(self.unknown(server, &fingerprint))),
            },
        }
    }

    /// What the known_hosts files say about `key` for `server`.
    fn lookup(&self, server: &SftpUrl, key: &PublicKey) -> Result<Listed, String> {
        let host = server.host.to_ascii_lowercase();
        let mut verdict = Listed::No;
        for file in &self.known_hosts {
            if self.named && self.record_into.is_none() {
                if let Err(e) = fs::metadata(file) {
                    return Err(format!(
                        "cannot read the known_hosts file {} ({KNOWN_HOSTS_ENV}): {e}",
                        file.display()
                    ));
                }
            }
            let listed = russh::keys::known_hosts::known_host_keys_path(&host, server.port, file)
                .map_err(|e| {
                format!("cannot check the host key against {}: {e}", file.display())
            })?;
            for (line, recorded) in listed {
                if recorded.key_data() == key.key_data() {
                    return Ok(Listed::Yes);
                }
                let changed = recorded.algorithm() == key.algorithm();
                match verdict {
                    Listed::Changed(..) => {}
                    _ if changed => verdict = Listed::Changed(file.clone(), line),
                    Listed::No => verdict = Listed::OtherType(file.clone(), line),
                    _ => {}
                }
            }
        }
        Ok(verdict)
    }

    /// Trust on first use: appends `key` for `server` to `file`.
    fn record(&self, server: &SftpUrl, key: &PublicKey, file: &Path) -> Result<(), SftpError> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        append_known_host(file, server, key).map_err(|e| {
            SftpError::new(
                ErrorKind::HostKey,
                server,
                format!(
                    "cannot record host key {fingerprint} in {} ({TOFU_ENV}): {e}",
                    file.display()
                ),
            )
        })?;
        tracing::warn!(
            host = %server.host,
            port = server.port,
            fingerprint = %fingerprint,
            file = %file.display(),
            "sftp: trusting the server's host key on first use ({TOFU_ENV}) and recording it; later connections must show the same key"
        );
        Ok(())
    }

    /// The refusal of a key nothing vouches for: its fingerprint and the
    /// ways to trust it.
    fn unknown(&self, server: &SftpUrl, fingerprint: &Fingerprint) -> String {
        let looked: Vec<String> = self
            .known_hosts
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        format!(
            "the server's host key {fingerprint} is unknown (not in {}). Check the fingerprint with the server's operator, then trust it by one of: adding it to a known_hosts file named by {KNOWN_HOSTS_ENV} (`ssh-keyscan -p {port} {host}` prints the line); pinning it with {HOST_KEYS_ENV}={pattern}={fingerprint}; or setting {TOFU_ENV}=1 to record the first key seen",
            looked.join(", "),
            port = server.port,
            host = server.host,
            pattern = host_pattern(server),
        )
    }
}

/// What the known_hosts files list for a server.
enum Listed {
    /// The key.
    Yes,
    /// Another key of the same type (file, line).
    Changed(PathBuf, usize),
    /// Keys of other types only (file, line).
    OtherType(PathBuf, usize),
    /// Nothing.
    No,
}

/// The server as known_hosts and pins name it: `host` for port 22,
/// `[host]:port` otherwise (lowercase).
fn host_pattern(server: &SftpUrl) -> String {
    let host = server.host.to_ascii_lowercase();
    if server.port == 22 {
        host
    } else {
        format!("[{host}]:{}", server.port)
    }
}

/// Appends a known_hosts line for `key` of `server` to `file`, creating it
/// (mode 0600, its folder 0700) when missing.
fn append_known_host(file: &Path, server: &SftpUrl, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    // A last line without its newline would swallow the new one.
    let mut last = [0u8; 1];
    let needs_newline =
        f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n';
    let key_text = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let line = format!(
        "{}{} {}\n",
        if needs_newline { "\n" } else { "" },
        host_pattern(server),
        key_text.trim()
    );
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

/// Parses [`HOST_KEYS_ENV`] (see the module doc).
fn parse_pins(text: &str) -> Result<Vec<Pin>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (server, fingerprint) = match entry.split_once('=') {
                Some((server, fp)) => (Some(parse_server(server.trim(), entry)?), fp.trim()),
                None => (None, entry),
            };
            let fingerprint: Fingerprint = fingerprint
                .parse()
                .ok()
                .filter(|fp: &Fingerprint| fp.algorithm() == HashAlg::Sha256)
                .ok_or_else(|| {
                    format!("`{entry}`: the fingerprint must be SHA256:BASE64 as `ssh-keygen -lf` prints it")
                })?;
            Ok(Pin {
                server,
                fingerprint,
            })
        })
        .collect()
}

/// `host`, `host:port`, `[host]:port` or `[host]` as lowercase host and port.
fn parse_server(text: &str, entry: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("`{entry}`: {why}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(bad("unexpected text after `]`")),
            },
            None => return Err(bad("`[` without `]`")),
        }
    } else {
        match text.split_once(':') {
            // More than one colon: an IPv6 address without a port.
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            _ => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad("needs a host before `=`"));
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn url(s: &str) -> SftpUrl {
        SftpUrl::parse(s).unwrap()
    }

    #[test]
    fn known_hosts_files_default_to_the_ones_ssh_reads() {
        let home = Path::new("/home/svc");
        let t = Trust::from_env(&env(&[]), Some(home));
        assert_eq!(
            t.known_hosts,
            [
                home.join(".ssh/known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts")
            ]
        );
        assert!(!t.named && t.record_into.is_none() && t.invalid.is_none());
        assert!(t.pins.is_empty());

        let t = Trust::from_env(&env(&[(KNOWN_HOSTS_ENV, "/etc/flow/kh")]), Some(home));
        assert_eq!(t.known_hosts, [PathBuf::from("/etc/flow/kh")]);
        assert!(t.named);
        let t = Trust::from_env(&env(&[]), None);
        assert_eq!(t.known_hosts, [PathBuf::from("/etc/ssh/ssh_known_hosts")]);
    }

    #[test]
    fn trust_on_first_use_is_opt_in_and_records_into_the_known_hosts_file() {
        let home = Path::new("/home/svc");
        for off in ["0", "false", "no", ""] {
            let t = Trust::from_env(&|n| (n == TOFU_ENV).then(|| off.to_string()), Some(home));
            assert_eq!(t.record_into, None, "{off}");
            assert!(t.invalid.is_none(), "{off}");
        }
        let t = Trust::from_env(&env(&[(TOFU_ENV, "YES")]), Some(home));
        assert_eq!(t.record_into, Some(home.join(".ssh/known_hosts")));
        let named = env(&[(TOFU_ENV, "1"), (KNOWN_HOSTS_ENV, "/var/lib/flow/kh")]);
        let t = Trust::from_env(&named, None);
        assert_eq!(t.record_into, Some(PathBuf::from("/var/lib/flow/kh")));

        let t = Trust::from_env(&env(&[(TOFU_ENV, "1")]), None);
        assert!(t.invalid.unwrap().contains("set FLOW_SFTP_KNOWN_HOSTS"));
        let t = Trust::from_env(&env(&[(TOFU_ENV, "always")]), Some(home));
        assert!(t.invalid.unwrap().contains("not `always`"));
    }

    #[test]
    fn pins_name_a_server_or_apply_to_all() {
        let pins = parse_pins(&format!(
            "files.example.com={FP}, Files.Example.com:2222={FP},[::1]:2200={FP},[::1]={FP},::1={FP},{FP}"
        ))
        .unwrap();
        let servers: Vec<Option<(String, u16)>> = pins.into_iter().map(|p| p.server).collect();
        let s = |h: &str, p: u16| Some((h.to_string(), p));
        assert_eq!(
            servers,
            [
                s("files.example.com", 22),
                s("files.example.com", 2222),
                s("::1", 2200),
                s("::1", 22),
                s("::1", 22),
                None
            ]
        );

        let t = Trust::from_env(
            &|n| (n == HOST_KEYS_ENV).then(|| format!("a.example:2222={FP}")),
            None,
        );
        assert_eq!(t.pins_for(&url("sftp://u@A.example:2222/x")).len(), 1);
        assert!(t.pins_for(&url("sftp://u@a.example/x")).is_empty());
        assert!(t.pins_for(&url("sftp://u@b.example:2222/x")).is_empty());
    }

    #[test]
    fn bad_pins_refuse_every_connection_saying_why() {
        for (value, why) in [
            ("h=MD5:00:11", "must be SHA256:BASE64"),
            ("h=SHA256:short", "must be SHA256:BASE64"),
            ("h=SHA512:47DEQpj8HBSa", "must be SHA256:BASE64"),
            ("=SHA256:x", "needs a host"),
            ("h:0=SHA256:x", "port must be"),
            ("[::1=SHA256:x", "without `]`"),
        ] {
            let t = Trust::from_env(&|n| (n == HOST_KEYS_ENV).then(|| value.to_string()), None);
            let why_not = t.invalid.clone().unwrap_or_default();
            assert!(why_not.contains(why), "{value}: {why_not}");
            assert!(why_not.starts_with(HOST_KEYS_ENV), "{value}: {why_not}");
        }
    }
}
