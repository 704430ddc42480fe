//! Dovecot on free loopback ports, for email-trigger tests.
//!
//! Self-contained (std, `tempfile` and `flow_testkit`) so that both crates'
//! tests can include it: `#[path = "../../tests/support/dovecot.rs"] mod
//! dovecot;`.
//!
//! [`Dovecot::start`] writes a config, a throwaway mailbox account and a
//! self-signed certificate for `127.0.0.1` (made with `openssl`) into a
//! temp dir, and runs `$FLOW_TEST_DOVECOT -F -c CONFIG` (logging to
//! `dovecot.log` there). It serves IMAP with STARTTLS on one port and
//! IMAPS on another; plain logins are allowed too (on loopback, for the
//! tests' own client). It returns `None` with a printed reason when
//! `FLOW_TEST_DOVECOT` is unset, and panics instead when
//! `FLOW_TEST_REQUIRE_SERVICES=1`. The server is stopped when the
//! [`Dovecot`] is dropped.
//!
//! Dovecot's login process refuses to run as root: the config runs it and
//! the mail store as the `dovecot` user, which must own the mail folder.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flow_testkit::{free_port, service_url};

/// How long Dovecot may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The mailbox account every server has.
pub const USER: &str = "orders";
/// Its password (characters that need percent-encoding in a URL, on purpose).
pub const PASSWORD: &str = "p@ss/w0rd";
/// [`PASSWORD`] as it is written in a URL.
const PASSWORD_IN_URL: &str = "p%40ss%2Fw0rd";

/// A running Dovecot; stopped on drop.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    imap_port: u16,
    imaps_port: u16,
}

impl Dovecot {
    /// Starts Dovecot (see the module doc); `None` when `FLOW_TEST_DOVECOT`
    /// is unset.
    pub fn start(test: &str) -> Option<Dovecot> {
        let dovecot = PathBuf::from(service_url("FLOW_TEST_DOVECOT", test)?);
        let dir = tempfile::tempdir().expect("temp dir");
        let (uid, gid) = dovecot_ids();
        self_signed_cert(dir.path());
        fs::write(
            dir.path().join("users"),
            format!(
                "{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{}/mail/{USER}\n",
                dir.path().display()
            ),
        )
        .expect("write the users file");
        fs::create_dir(dir.path().join("mail")).expect("create the mail dir");
        chown(&dir.path().join("mail"), uid, gid);
        // Readable by the dovecot user (temp dirs are 0700).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        // A port taken between choosing and binding makes dovecot exit: try again.
        for _ in 0..5 {
            let (imap_port, imaps_port) = (free_port(), free_port());
            fs::write(
                dir.path().join("dovecot.conf"),
                config(dir.path(), imap_port, imaps_port),
            )
            .expect("write dovecot.conf");
            let log = dir.path().join("dovecot.log");
            let _ = fs::remove_file(&log);
            let mut child = Command::new(&dovecot)
                .arg("-F")
                .arg("-c")
                .arg(dir.path().join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", dovecot.display()));
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if greets(imap_port) && greets_tls(imaps_port) {
                    return Some(Dovecot {
                        child,
                        dir,
                        imap_port,
                        imaps_port,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&log).unwrap_or_default();
            if !log.contains("Address already in use") {
                panic!("dovecot did not start; its log:\n{log}");
            }
        }
        panic!("dovecot could not bind free ports in 5 tries");
    }

    /// `imap://USER:PASSWORD@127.0.0.1:PORT` (STARTTLS).
    pub fn starttls_url(&self) -> String {
        format!(
            "imap://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}",
            self.imap_port
        )
    }

    /// `imaps://USER:PASSWORD@127.0.0.1:PORT` (TLS from the start).
    pub fn imaps_url(&self) -> String {
        format!(
            "imaps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}",
            self.imaps_port
        )
    }

    /// `imap://...?tls=none`: for the tests' own client, which does not
    /// trust the test certificate.
    pub fn plain_url(&self) -> String {
        format!("{}?tls=none", self.starttls_url())
    }

    /// The certificate (PEM) the server presents: what `FLOW_IMAP_CA_FILE`
    /// names for the binary to trust it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, imap_port: u16, imaps_port: u16) -> String {
    let d = dir.display();
    format!(
        "protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
"
    )
}

/// Whether an IMAP server greets on `port` (`* OK`).
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && greeting.starts_with(b"* OK")
}

/// Whether something listens on the TLS port (the handshake is the
/// binary's to do).
fn greets_tls(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The uid and gid of the `dovecot` user (the package creates it).
fn dovecot_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "dovecot"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "no `dovecot` user: install dovecot-imapd"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// `cert.pem` and `key.pem` in `dir`: a self-signed certificate for
/// `127.0.0.1` and `localhost`, not a CA (rustls refuses a CA certificate
/// as a server's own).
fn self_signed_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
