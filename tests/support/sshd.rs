//! OpenSSH's `sshd` on a free loopback port, for SFTP tests.
//!
//! Self-contained (std and `tempfile` only) so that both crates' tests can
//! include it: `#[path = "../../tests/support/sshd.rs"] mod sshd;`.
//!
//! [`Sshd::start`] generates a throwaway host key and client key with
//! `ssh-keygen` in a temp dir, writes an `sshd_config` there and runs
//! `$FLOW_TEST_SSHD -D -e -f CONFIG` (logging to `sshd.log` in the temp dir).
//! It returns `None` with a printed reason when `FLOW_TEST_SSHD` is unset,
//! and panics instead when `FLOW_TEST_REQUIRE_SERVICES=1`. The server is
//! killed when the [`Sshd`] is dropped.
//!
//! The login user is the current user (root in CI, hence `PermitRootLogin
//! yes`), authenticated by the generated client key. Password logins are
//! enabled too, for accounts that have a password (see
//! [`password_account`]).

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow_testkit::{free_port, service_url};

/// How long sshd may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running sshd; killed on drop.
pub struct Sshd {
    child: Child,
    sshd: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    client_key: String,
}

/// The sshd to run, from `FLOW_TEST_SSHD`: `None` (after printing why) when
/// unset; a panic when unset and `FLOW_TEST_REQUIRE_SERVICES=1`.
pub fn sshd_path(test: &str) -> Option<PathBuf> {
    service_url("FLOW_TEST_SSHD", test).map(PathBuf::from)
}

/// An account with a password for password-login tests, from
/// `FLOW_TEST_SFTP_PASSWORD_USER=user:password` (`.ci/run` creates one):
/// `None` (after printing why) when unset; a panic when unset and
/// `FLOW_TEST_REQUIRE_SERVICES=1`.
pub fn password_account(test: &str) -> Option<(String, String)> {
    let value = std::env::var("FLOW_TEST_SFTP_PASSWORD_USER").unwrap_or_default();
    match value.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Some((user.to_string(), password.to_string()))
        }
        _ => {
            if std::env::var("FLOW_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: FLOW_TEST_SFTP_PASSWORD_USER (user:password of a local account) is not set and FLOW_TEST_REQUIRE_SERVICES=1");
            }
            eprintln!("skipping {test}: set FLOW_TEST_SFTP_PASSWORD_USER=user:password (a local account sshd may log in with a password)");
            None
        }
    }
}

/// Runs `ssh-keygen` to make a key pair without passphrase at `path`
/// (`path.pub` holds the public key). `kind` is `ed25519`, `rsa`, ...;
/// `pem` writes the private key in the old PEM format instead of OpenSSH's.
/// Returns (private key, public key line).
pub fn keygen(path: &Path, kind: &str, pem: bool) -> (String, String) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "flow-test", "-f"])
        .arg(path);
    if pem {
        cmd.args(["-m", "PEM"]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen (install openssh-client): {e}"));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = fs::read_to_string(path).expect("read the generated private key");
    let public = fs::read_to_string(path.with_extension("pub")).expect("read the public key");
    (private, public.trim().to_string())
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether an SSH server answers on `port` with its version banner.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-")
}

impl Sshd {
    /// Starts sshd (see the module doc); `None` when `FLOW_TEST_SSHD` is unset.
    pub fn start(test: &str) -> Option<Sshd> {
        Sshd::start_with(test, &[])
    }

    /// Starts sshd with some `sshd_config` settings replaced or added, e.g.
    /// `[("PasswordAuthentication", "no")]`.
    pub fn start_with(test: &str, overrides: &[(&str, &str)]) -> Option<Sshd> {
        let sshd = sshd_path(test)?;
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().expect("temp dir");
        keygen(&dir.path().join("host_ed25519"), "ed25519", false);
        let (client_key, client_pub) = keygen(&dir.path().join("client_ed25519"), "ed25519", false);
        fs::write(
            dir.path().join("authorized_keys"),
            format!("{client_pub}\n"),
        )
        .expect("write authorized_keys");
        fs::create_dir(dir.path().join("data")).expect("create the data dir");
        // Password accounts must be able to write there too.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        fs::set_permissions(dir.path().join("data"), mode).expect("chmod data");
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the temp dir");
        let log_path = dir.path().join("sshd.log");
        let user = current_user();
        // A port taken between choosing and binding makes sshd exit: try another.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            let d = dir.path().display().to_string();
            let mut settings: Vec<(&str, String)> = vec![
                ("ListenAddress", "127.0.0.1".into()),
                ("Port", port.to_string()),
                ("HostKey", format!("{d}/host_ed25519")),
                ("AuthorizedKeysFile", format!("{d}/authorized_keys")),
                ("StrictModes", "no".into()),
                ("PubkeyAuthentication", "yes".into()),
                ("PasswordAuthentication", "yes".into()),
                ("KbdInteractiveAuthentication", "no".into()),
                ("PermitRootLogin", "yes".into()),
                ("UsePAM", "no".into()),
                ("PidFile", "none".into()),
                ("Subsystem", "sftp internal-sftp".into()),
                ("MaxStartups", "100".into()),
                ("MaxSessions", "100".into()),
                ("LogLevel", "VERBOSE".into()),
            ];
            for (key, value) in overrides {
                match settings.iter_mut().find(|(k, _)| k == key) {
                    Some(setting) => setting.1 = value.to_string(),
                    None => settings.push((key, value.to_string())),
                }
            }
            let text: String = settings.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            fs::write(&config, text).expect("write sshd_config");
            if let Some(child) = spawn(&sshd, dir.path(), port) {
                return Some(Sshd {
                    child,
                    sshd,
                    dir,
                    port,
                    user,
                    client_key,
                });
            }
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            if !log.contains("Address already in use") {
                panic!("sshd exited at start; its log:\n{log}");
            }
        }
        panic!("sshd could not bind a free port in 5 tries");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (OpenSSH format), authorized for [`Sshd::user`].
    pub fn client_key(&self) -> &str {
        &self.client_key
    }

    /// The client's public key line (`ssh-ed25519 AAAA… flow-test`), for
    /// another server to [`Sshd::authorize`].
    pub fn client_public_key(&self) -> String {
        fs::read_to_string(self.dir.path().join("client_ed25519.pub"))
            .expect("read the client public key")
            .trim()
            .to_string()
    }

    /// A folder the tests may use (writable by every account), absolute.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `sftp://USER@127.0.0.1:PORT` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("sftp://{}@127.0.0.1:{}{path}", self.user, self.port)
    }

    /// `sftp://USER@127.0.0.1:PORT/<data dir>/` + `rel`.
    pub fn data_url(&self, rel: &str) -> String {
        self.url(&format!("{}/{rel}", self.data_dir().display()))
    }

    /// Adds a public key line to the authorized keys.
    pub fn authorize(&self, public_key: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(f, "{public_key}").expect("append to authorized_keys");
    }

    /// The server's host public key (`ssh-ed25519 AAAA… flow-test`).
    pub fn host_public_key(&self) -> String {
        fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .expect("read the host public key")
            .trim()
            .to_string()
    }

    /// Restarts the server on the same port with a new host key, as a
    /// reinstalled server (or one in the way) would show.
    pub fn replace_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in ["host_ed25519", "host_ed25519.pub"] {
            fs::remove_file(self.dir.path().join(file)).expect("remove the old host key");
        }
        keygen(&self.dir.path().join("host_ed25519"), "ed25519", false);
        self.child = spawn(&self.sshd, self.dir.path(), self.port).unwrap_or_else(|| {
            panic!(
                "sshd did not start again on port {}; its log:\n{}",
                self.port,
                self.log()
            )
        });
    }

    /// A known_hosts line for this server's host key (`[127.0.0.1]:PORT key`).
    pub fn known_hosts_line(&self) -> String {
        let public = self.host_public_key();
        let mut parts = public.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("[127.0.0.1]:{} {kind} {key}", self.port)
    }

    /// A fresh temp dir inside this server's dir (for keys, known_hosts, ...).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Runs sshd with the `sshd_config` in `dir` and waits until it answers on
/// `port`: `None` when it exited first (its log in `dir/sshd.log` says why).
fn spawn(sshd: &Path, dir: &Path, port: u16) -> Option<Child> {
    let log_path = dir.join("sshd.log");
    let log = fs::File::create(&log_path).expect("create sshd.log");
    let mut child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if answers(port) {
            return Some(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sshd did not accept connections on port {port} within {START_TIMEOUT:?}; its log:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
