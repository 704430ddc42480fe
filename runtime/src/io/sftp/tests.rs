//! Tests of the SFTP client against a real OpenSSH sshd on a loopback port
//! (`FLOW_TEST_SSHD`, see `tests/support/sshd.rs`), plus URL parsing.
//!
//! The server runs on this machine, so the tests check what a client
//! operation did by looking at the files directly.

#[path = "../../../../tests/support/sshd.rs"]
mod sshd;

use std::fs;
use std::net::TcpListener;

use super::*;
use crate::io::sftp::default_user;
use sshd::Sshd;

fn url(s: &str) -> SftpUrl {
    SftpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

// ------------------------------------------------------------ URLs

#[test]
fn urls_parse_with_default_and_explicit_ports() {
    let u = url("sftp://alice@files.example.com/in/*.csv");
    assert_eq!(
        u,
        SftpUrl {
            user: "alice".into(),
            host: "files.example.com".into(),
            port: 22,
            path: "/in/*.csv".into(),
        }
    );
    assert_eq!(u.to_string(), "sftp://alice@files.example.com:22/in/*.csv");
    assert_eq!(u.parent(), "/in");
    assert_eq!(u.file_name(), "*.csv");

    let u = url("SFTP://bob@10.0.0.5:2222/a.txt");
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("10.0.0.5", 2222, "/a.txt")
    );
    assert_eq!(u.parent(), "/");

    let u = url("sftp://carol@[::1]:2200/x/y");
    assert_eq!((u.host.as_str(), u.port), ("::1", 2200));
    assert_eq!(u.to_string(), "sftp://carol@[::1]:2200/x/y");
    assert_eq!(url(&u.to_string()), u, "Display parses back");
    // No user: the one running this process, like `ssh host`.
    match SftpUrl::parse("sftp://files.example.com/out/*.csv") {
        Ok(u) => assert_eq!(u.user, default_user()),
        Err(e) => assert!(
            default_user().is_empty() && e.to_string().contains("needs a user name"),
            "{e}"
        ),
    }
    assert!(SftpUrl::is_sftp("sftp://a@b/c"));
    assert!(!SftpUrl::is_sftp("inbox/sftp.csv"));
}

#[test]
fn bad_urls_are_permanent_errors_that_never_echo_a_password() {
    for (input, why) in [
        ("http://a@b/c", "not an sftp:// URL"),
        ("sftp://a@b", "needs an absolute path"),
        ("sftp://@host/c", "needs a user name"),
        ("sftp://a@/c", "needs a host name"),
        ("sftp://a@h:0/c", "port must be"),
        ("sftp://a@h:99999/c", "port must be"),
        ("sftp://a@h:x/c", "port must be"),
        ("sftp://a@[::1/c", "without `]`"),
    ] {
        let e = SftpUrl::parse(input).expect_err(input);
        assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{input}");
        assert!(!e.is_retryable(), "{input}");
        assert!(e.to_string().starts_with(input), "{input}: {e}");
        assert!(e.to_string().contains(why), "{input}: {e}");
    }
    let e = SftpUrl::parse("sftp://alice:hunter2@h/in").expect_err("password");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().starts_with("sftp://alice:***@h/in: "), "{e}");
    assert!(e.to_string().contains("`auth:`"), "{e}");
}

// ------------------------------------------------------------ a real server

/// A server whose host key the client trusts (a known_hosts file for its
/// port, as an operator would set up).
fn server(test: &str) -> Option<Sshd> {
    Sshd::start(test).map(trusted)
}

fn trusted(s: Sshd) -> Sshd {
    let known = s.scratch("trusted").join("known_hosts");
    fs::write(&known, format!("{}\n", s.known_hosts_line())).unwrap();
    trust(&s, &[(KNOWN, known.to_str().unwrap())], None);
    s
}

const KNOWN: &str = host_keys::KNOWN_HOSTS_ENV;
const PINS: &str = host_keys::HOST_KEYS_ENV;
const TOFU: &str = host_keys::TOFU_ENV;

/// Trusts host keys on `s`'s port as the environment `env` and home
/// directory `home` say.
fn trust(s: &Sshd, env: &[(&str, &str)], home: Option<&std::path::Path>) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let trust = Trust::from_env(&|name| env.get(name).cloned(), home);
    lock(&TEST_TRUST).insert(s.port(), trust);
}

/// Drops the cached session of `file`, so that the next operation connects
/// (and checks the host key) again.
async fn reconnect(file: &SftpUrl, auth: &str) {
    slot(file, auth).lock().await.conn = None;
}

/// The SHA-256 fingerprint of `s`'s host key, as `ssh-keygen -l` shows it.
fn fingerprint(s: &Sshd) -> String {
    PublicKey::from_openssh(&s.host_public_key())
        .unwrap()
        .fingerprint(HashAlg::Sha256)
        .to_string()
}

#[tokio::test]
async fn list_matches_the_glob_on_regular_files_only() {
    let Some(s) = server("list_matches_the_glob_on_regular_files_only") else {
        return;
    };
    let dir = s.data_dir().join("in");
    fs::create_dir_all(dir.join("sub.csv")).unwrap();
    fs::write(dir.join("b.csv"), "bb").unwrap();
    fs::write(dir.join("a.csv"), "a").unwrap();
    fs::write(dir.join("c.txt"), "c").unwrap();
    fs::write(dir.join("a.csv.tmp"), "x").unwrap();
    std::os::unix::fs::symlink(dir.join("a.csv"), dir.join("link.csv")).unwrap();
    let key = s.client_key();

    let files = list(&url(&s.data_url("in/*.csv")), key).await.unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a.csv", "b.csv"]);
    assert_eq!(files[1].size, 2);
    assert_eq!(files[1].url, s.data_url("in/b.csv"));
    let mtime = fs::metadata(dir.join("b.csv")).unwrap().modified().unwrap();
    assert_eq!(
        files[1].modified.timestamp(),
        DateTime::<Utc>::from(mtime).timestamp()
    );

    let files = list(&url(&s.data_url("in/?.txt")), key).await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(list(&url(&s.data_url("missing/*.csv")), key)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn write_read_append_rename_remove_round_trip() {
    let Some(s) = server("write_read_append_rename_remove_round_trip") else {
        return;
    };
    let key = s.client_key();
    let target = url(&s.data_url("out/deep/report.csv"));

    let written = write(&target, key, b"a,b\n", false).await.unwrap();
    assert_eq!(written.name, "report.csv");
    assert_eq!(written.size, 4);
    assert_eq!(written.url, s.data_url("out/deep/report.csv"));
    let local = s.data_dir().join("out/deep/report.csv");
    assert_eq!(fs::read(&local).unwrap(), b"a,b\n");
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(local.parent().unwrap()).unwrap().count(), 1);

    // Replacing a file.
    write(&target, key, b"x,y\n", false).await.unwrap();
    let appended = write(&target, key, b"1,2\n", true).await.unwrap();
    assert_eq!(appended.size, 8);
    let (data, file) = read(&target, key).await.unwrap();
    assert_eq!(data, b"x,y\n1,2\n");
    assert_eq!(file, stat(&target, key).await.unwrap());

    // Appending creates a missing file.
    let log = url(&s.data_url("logs/run.log"));
    write(&log, key, b"one\n", true).await.unwrap();
    write(&log, key, b"two\n", true).await.unwrap();
    assert_eq!(read(&log, key).await.unwrap().0, b"one\ntwo\n");

    // Renaming creates the target's folders and replaces an existing target.
    let done = url(&s.data_url("done/2026/report.csv"));
    let moved = rename(&target, &done, key).await.unwrap();
    assert_eq!(moved.url, s.data_url("done/2026/report.csv"));
    assert!(!local.exists());
    write(&target, key, b"new\n", false).await.unwrap();
    rename(&target, &done, key).await.unwrap();
    assert_eq!(
        fs::read(s.data_dir().join("done/2026/report.csv")).unwrap(),
        b"new\n"
    );

    // Onto itself: nothing happens.
    rename(&done, &done, key).await.unwrap();
    assert_eq!(read(&done, key).await.unwrap().0, b"new\n");

    assert!(remove(&done, key).await.unwrap());
    assert!(!remove(&done, key).await.unwrap(), "already gone");
    assert!(!s.data_dir().join("done/2026/report.csv").exists());
}

#[tokio::test]
async fn missing_files_are_permanent_errors_naming_the_url() {
    let Some(s) = server("missing_files_are_permanent_errors_naming_the_url") else {
        return;
    };
    let key = s.client_key();
    let missing = url(&s.data_url("nope.csv"));
    for e in [
        read(&missing, key).await.unwrap_err(),
        stat(&missing, key).await.unwrap_err(),
        rename(&missing, &url(&s.data_url("x.csv")), key)
            .await
            .unwrap_err(),
    ] {
        assert!(e.is_not_found(), "{e}");
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().starts_with(&s.data_url("nope.csv")), "{e}");
    }
    // A folder is not a file.
    let e = read(&url(&s.data_url("")), key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(!e.is_retryable());
    fs::create_dir(s.data_dir().join("folder")).unwrap();
    let e = write(&url(&s.data_url("folder")), key, b"x", false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: is a folder", s.data_url("folder"))),
        "{e}"
    );
    // The temporary file was removed.
    assert_eq!(fs::read_dir(s.data_dir()).unwrap().count(), 1);
}

#[tokio::test]
async fn a_wrong_key_or_password_is_a_permanent_auth_error() {
    let Some(s) = server("a_wrong_key_or_password_is_a_permanent_auth_error") else {
        return;
    };
    let (other_key, _) = sshd::keygen(&s.scratch("keys").join("other"), "ed25519", false);
    let file = url(&s.data_url("a.csv"));
    let e = stat(&file, &other_key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("private key"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("sftp://{}@127.0.0.1:{}", s.user(), s.port())),
        "{e}"
    );
    assert!(!e.to_string().contains("BEGIN"), "{e}");

    let e = stat(&file, "not-the-password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");

    let e = stat(
        &file,
        "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("cannot be read"), "{e}");
}

#[tokio::test]
async fn rsa_keys_in_pem_format_log_in() {
    let Some(s) = server("rsa_keys_in_pem_format_log_in") else {
        return;
    };
    let (rsa, rsa_pub) = sshd::keygen(&s.scratch("keys").join("rsa"), "rsa", true);
    assert!(rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    s.authorize(&rsa_pub);
    fs::write(s.data_dir().join("a.txt"), "hi").unwrap();
    let (data, _) = read(&url(&s.data_url("a.txt")), &rsa).await.unwrap();
    assert_eq!(data, b"hi");
}

#[tokio::test]
async fn password_logins_work() {
    let Some((user, password)) = sshd::password_account("password_logins_work") else {
        return;
    };
    let Some(s) = server("password_logins_work") else {
        return;
    };
    let mut file = url(&s.data_url("pw.txt"));
    file.user = user;
    write(&file, &password, b"by password", false)
        .await
        .unwrap();
    assert_eq!(
        fs::read(s.data_dir().join("pw.txt")).unwrap(),
        b"by password"
    );
    assert!(s.log().contains("Accepted password"), "{}", s.log());
    let e = stat(&file, "wrong password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn passwords_fall_back_to_keyboard_interactive() {
    let test = "passwords_fall_back_to_keyboard_interactive";
    let Some((user, password)) = sshd::password_account(test) else {
        return;
    };
    // As servers that check passwords through PAM are often set up.
    let Some(s) = Sshd::start_with(
        test,
        &[
            ("UsePAM", "yes"),
            ("PasswordAuthentication", "no"),
            ("KbdInteractiveAuthentication", "yes"),
        ],
    )
    .map(trusted) else {
        return;
    };
    let mut file = url(&s.data_url("kbd.txt"));
    file.user = user;
    write(&file, &password, b"by keyboard", false)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    assert_eq!(
        fs::read(s.data_dir().join("kbd.txt")).unwrap(),
        b"by keyboard"
    );
    assert!(
        s.log().contains("Accepted keyboard-interactive"),
        "{}",
        s.log()
    );
    let e = stat(&file, "wrong password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: nothing listens on the port now.
    let file = url(&format!("sftp://u@127.0.0.1:{port}/a.csv"));
    let e = read(&file, "password").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
    assert!(e.is_retryable());
    assert!(
        e.to_string()
            .starts_with(&format!("sftp://u@127.0.0.1:{port}: cannot connect")),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_retryable_timeout() {
    // Accepts connections and says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    lock(&TEST_CONNECT_TIMEOUT).insert(port, Duration::from_millis(300));
    let file = url(&format!("sftp://u@127.0.0.1:{port}/a.csv"));
    let e = stat(&file, "password").await.unwrap_err();
    held.abort();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable());
    assert!(
        e.to_string()
            .starts_with(&format!("sftp://u@127.0.0.1:{port}: could not connect")),
        "{e}"
    );
}

#[tokio::test]
async fn sessions_are_reused_per_account_and_secret() {
    let Some(s) = server("sessions_are_reused_per_account_and_secret") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    write(&file, key, b"1", false).await.unwrap();
    read(&file, key).await.unwrap();
    list(&url(&s.data_url("*")), key).await.unwrap();
    assert_eq!(handshakes(&file, key).await, 1);

    // Many operations at once share the one session.
    let all = futures::future::join_all((0..8).map(|_| read(&file, key))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(handshakes(&file, key).await, 1);

    // Another secret for the same account gets its own session.
    let _ = stat(&file, "a password").await;
    assert_eq!(handshakes(&file, key).await, 1);
    assert_eq!(handshakes(&file, "a password").await, 1);
}

#[tokio::test]
async fn a_dropped_connection_is_replaced() {
    let Some(s) = server("a_dropped_connection_is_replaced") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    write(&file, key, b"1", false).await.unwrap();
    // Close the cached session as a server restart or an idle timeout would.
    let (conn, reused) = session(&file, key).await.unwrap();
    assert!(reused);
    conn.ssh
        .disconnect(russh::Disconnect::ByApplication, "test", "en")
        .await
        .unwrap();
    drop(conn);
    assert_eq!(read(&file, key).await.unwrap().0, b"1");
    assert_eq!(handshakes(&file, key).await, 2);
}

#[tokio::test]
async fn a_broken_sftp_channel_is_replaced_and_reads_are_tried_again() {
    let Some(s) = server("a_broken_sftp_channel_is_replaced_and_reads_are_tried_again") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    write(&file, key, b"1", false).await.unwrap();
    // The SSH connection stays up but its SFTP channel is gone.
    let (conn, _) = session(&file, key).await.unwrap();
    conn.sftp.close().await.unwrap();
    drop(conn);
    // A read fails on the cached session, then succeeds on a new one.
    assert_eq!(read(&file, key).await.unwrap().0, b"1");
    assert_eq!(handshakes(&file, key).await, 2);

    // A write is not repeated by the client: it fails retryably, and the
    // next operation connects again.
    let (conn, _) = session(&file, key).await.unwrap();
    conn.sftp.close().await.unwrap();
    drop(conn);
    let e = write(&file, key, b"2", false).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(handshakes(&file, key).await, 2);
    write(&file, key, b"2", false).await.unwrap();
    assert_eq!(handshakes(&file, key).await, 3);
    assert_eq!(fs::read(s.data_dir().join("a.txt")).unwrap(), b"2");
}

#[tokio::test]
async fn five_megabytes_round_trip() {
    let Some(s) = server("five_megabytes_round_trip") else {
        return;
    };
    let key = s.client_key();
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = url(&s.data_url("big.bin"));
    let written = write(&file, key, &data, false).await.unwrap();
    assert_eq!(written.size, data.len() as u64);
    assert!(fs::read(s.data_dir().join("big.bin")).unwrap() == data);
    let (back, meta) = read(&file, key).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert!(back == data, "the 5 MB read back differ");
}

#[tokio::test]
async fn host_keys_are_checked_against_a_known_hosts_file() {
    let Some(s) = server("host_keys_are_checked_against_a_known_hosts_file") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    fs::write(s.data_dir().join("a.txt"), "x").unwrap();
    let known = s.scratch("kh").join("known_hosts");
    let named = [(KNOWN, known.to_str().unwrap())];

    // Listed (among other hosts' keys): accepted.
    let (_, other_pub) = sshd::keygen(&s.scratch("kh").join("other"), "ed25519", false);
    let mut parts = other_pub.split_whitespace();
    let (kind, other) = (parts.next().unwrap(), parts.next().unwrap());
    let listed = format!("[otherhost]:22 {kind} {other}\n{}\n", s.known_hosts_line());
    fs::write(&known, listed).unwrap();
    trust(&s, &named, None);
    reconnect(&file, key).await;
    let ok = stat(&file, key).await;

    // Another key for the host: refused, naming the line.
    fs::write(&known, format!("[127.0.0.1]:{} {kind} {other}\n", s.port())).unwrap();
    reconnect(&file, key).await;
    let changed = stat(&file, key).await;

    // Not listed: refused.
    fs::write(&known, format!("[otherhost]:22 {kind} {other}\n")).unwrap();
    reconnect(&file, key).await;
    let unknown = stat(&file, key).await;

    // A known_hosts file that does not exist: refused, saying so.
    let missing = known.with_file_name("missing");
    trust(&s, &[(KNOWN, missing.to_str().unwrap())], None);
    reconnect(&file, key).await;
    let missing = stat(&file, key).await;

    ok.unwrap();
    let e = changed.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains("differs from the one on line 1"),
        "{e}"
    );
    let e = unknown.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(e.to_string().contains("is unknown (not in "), "{e}");
    assert!(e.to_string().contains(&fingerprint(&s)), "{e}");
    let e = missing.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(
        e.to_string().contains("cannot read the known_hosts file"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_by_default_naming_its_fingerprint() {
    let Some(s) = server("an_unknown_host_key_is_refused_by_default_naming_its_fingerprint") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    fs::write(s.data_dir().join("a.txt"), "x").unwrap();
    // Nothing set, and a home directory without known_hosts.
    let home = s.scratch("home");
    trust(&s, &[], Some(&home));
    reconnect(&file, key).await;
    let e = stat(&file, key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(!e.is_retryable());
    let message = e.to_string();
    let fp = fingerprint(&s);
    assert!(
        message.starts_with(&format!(
            "sftp://{}@127.0.0.1:{}: the server's host key {fp} is unknown",
            s.user(),
            s.port()
        )),
        "{message}"
    );
    // The three ways to trust it, the pin ready to copy.
    assert!(message.contains(&format!("{KNOWN} ")), "{message}");
    assert!(
        message.contains(&format!("{PINS}=[127.0.0.1]:{}={fp}", s.port())),
        "{message}"
    );
    assert!(message.contains(&format!("{TOFU}=1")), "{message}");
    assert!(
        message.contains(&home.join(".ssh/known_hosts").display().to_string()),
        "{message}"
    );
    assert!(!message.contains("BEGIN"), "{message}");

    // The user's ~/.ssh/known_hosts, as `ssh` reads it, is looked in.
    fs::create_dir(home.join(".ssh")).unwrap();
    fs::write(
        home.join(".ssh/known_hosts"),
        format!("{}\n", s.known_hosts_line()),
    )
    .unwrap();
    reconnect(&file, key).await;
    stat(&file, key).await.unwrap();
}

#[tokio::test]
async fn pinned_fingerprints_are_accepted_and_others_refused() {
    let Some(s) = server("pinned_fingerprints_are_accepted_and_others_refused") else {
        return;
    };
    let key = s.client_key();
    let file = url(&s.data_url("a.txt"));
    fs::write(s.data_dir().join("a.txt"), "x").unwrap();
    let home = s.scratch("home");
    let fp = fingerprint(&s);
    let (_, other_pub) = sshd::keygen(&s.scratch("k").join("other"), "ed25519", false);
    let other_fp = PublicKey::from_openssh(&other_pub)
        .unwrap()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let check = |pins: String| {
        trust(&s, &[(PINS, &pins)], Some(&home));
        async {
            reconnect(&file, key).await;
            stat(&file, key).await
        }
    };

    // For this server (among others'), for every server, or among old ones.
    let port = s.port();
    check(format!(
        "files.example.com={other_fp},127.0.0.1:{port}={fp}"
    ))
    .await
    .unwrap();
    check(fp.clone()).await.unwrap();
    check(format!(
        "[127.0.0.1]:{port}={other_fp}, [127.0.0.1]:{port}={fp}"
    ))
    .await
    .unwrap();

    // Another key pinned for this server: refused, even though a pin for
    // every server would match (the server's own pins decide).
    let e = check(format!("127.0.0.1:{port}={other_fp},{fp}"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(
        e.to_string().contains(&format!(
            "host key {fp} is not the one pinned for [127.0.0.1]:{port} in {PINS}"
        )),
        "{e}"
    );
    // Pins for other servers (or this host on port 22) vouch for nothing here.
    let e = check(format!("127.0.0.1={fp}")).await.unwrap_err();
    assert!(e.to_string().contains("is unknown"), "{e}");
    // A pin that does not parse refuses the connection, saying why.
    let e = check("127.0.0.1=MD5:aa".into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(e.to_string().contains(PINS), "{e}");
}

#[tokio::test]
async fn trust_on_first_use_records_the_key_then_refuses_a_changed_one() {
    let Some(mut s) = server("trust_on_first_use_records_the_key_then_refuses_a_changed_one")
    else {
        return;
    };
    let key = s.client_key().to_string();
    let key = key.as_str();
    let file = url(&s.data_url("a.txt"));
    fs::write(s.data_dir().join("a.txt"), "x").unwrap();
    let recorded = s.scratch("tofu").join("state/known_hosts");
    let env = [(TOFU, "1"), (KNOWN, recorded.to_str().unwrap())];
    trust(&s, &env, None);

    // First use: accepted and recorded, readable by the owner only.
    reconnect(&file, key).await;
    stat(&file, key).await.unwrap();
    let line = format!("{}\n", s.known_hosts_line());
    assert_eq!(fs::read_to_string(&recorded).unwrap(), line);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&recorded).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Later: checked against it (not recorded twice).
    reconnect(&file, key).await;
    stat(&file, key).await.unwrap();
    assert_eq!(fs::read_to_string(&recorded).unwrap(), line);

    // The server comes back with another key: refused, and not recorded.
    s.replace_host_key();
    reconnect(&file, key).await;
    let e = stat(&file, key).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostKey, "{e}");
    assert!(
        e.to_string().contains(&format!(
            "host key {} differs from the one on line 1 of {}",
            fingerprint(&s),
            recorded.display()
        )),
        "{e}"
    );
    assert_eq!(fs::read_to_string(&recorded).unwrap(), line);
}

// ------------------------------------------------------------ streamed transfers

/// `len` bytes that repeat only every 251 bytes, so no chunk of a transfer
/// looks like another at the same offset.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// The names in `dir`, sorted.
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether `dir` holds no `NAME.tmp-UUID` file.
fn no_temporary_file(dir: &std::path::Path) -> bool {
    let names = names_in(dir);
    let none = !names.iter().any(|n| n.contains(".tmp-"));
    if !none {
        eprintln!("{}: {names:?}", dir.display());
    }
    none
}

#[tokio::test]
async fn streamed_transfers_copy_files_byte_for_byte() {
    let Some(s) = server("streamed_transfers_copy_files_byte_for_byte") else {
        return;
    };
    let Some(other) = server("streamed_transfers_copy_files_byte_for_byte") else {
        return;
    };
    other.authorize(&s.client_public_key());
    let key = s.client_key();
    let local = tempfile::tempdir().unwrap();
    // A few bytes, and a few MB that are not a whole number of chunks.
    for (name, data) in [
        ("small.txt", b"a,b\n1,2\n".to_vec()),
        ("big.bin", patterned(3 * CHUNK * 4 + 12_345)),
    ] {
        let source = local.path().join(name);
        fs::write(&source, &data).unwrap();

        // Up: local → server, under a new folder.
        let up = url(&s.data_url(&format!("up/{name}")));
        let file = upload(&source, &up, key).await.unwrap();
        assert_eq!(
            (file.size, file.url.as_str()),
            (data.len() as u64, &*up.to_string())
        );
        assert!(fs::read(s.data_dir().join("up").join(name)).unwrap() == data);
        assert!(no_temporary_file(&s.data_dir().join("up")));

        // Across: server → another server.
        let across = url(&other.data_url(&format!("across/{name}")));
        let file = copy(&up, &across, key).await.unwrap();
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.url, across.to_string());
        assert!(fs::read(other.data_dir().join("across").join(name)).unwrap() == data);
        assert!(no_temporary_file(&other.data_dir().join("across")));

        // Down: server → local.
        let back = local.path().join(format!("back-{name}"));
        let file = download(&across, key, &back).await.unwrap();
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.name, name);
        assert!(
            fs::read(&back).unwrap() == data,
            "{name} came back different"
        );
    }
    assert_eq!(names_in(&s.data_dir().join("up")), ["big.bin", "small.txt"]);
    assert_eq!(
        names_in(&other.data_dir().join("across")),
        ["big.bin", "small.txt"]
    );
    // Replacing an existing target.
    let target = url(&s.data_url("up/small.txt"));
    let newer = local.path().join("newer.txt");
    fs::write(&newer, "newer").unwrap();
    upload(&newer, &target, key).await.unwrap();
    assert_eq!(
        fs::read(s.data_dir().join("up/small.txt")).unwrap(),
        b"newer"
    );
    // An empty file.
    let empty = local.path().join("empty");
    fs::write(&empty, "").unwrap();
    let file = upload(&empty, &url(&s.data_url("empty")), key)
        .await
        .unwrap();
    assert_eq!(file.size, 0);
    let file = download(
        &url(&s.data_url("empty")),
        key,
        &local.path().join("empty-back"),
    )
    .await
    .unwrap();
    assert_eq!(file.size, 0);
    assert_eq!(fs::read(local.path().join("empty-back")).unwrap(), b"");
}

#[tokio::test]
async fn a_failed_upload_leaves_no_temporary_file_and_keeps_the_source() {
    let Some(s) = server("a_failed_upload_leaves_no_temporary_file_and_keeps_the_source") else {
        return;
    };
    let key = s.client_key();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("a.bin");
    let data = patterned(CHUNK + 7);
    fs::write(&source, &data).unwrap();

    // The target is a folder: the whole file goes up, the rename fails.
    fs::create_dir_all(s.data_dir().join("out/a.bin")).unwrap();
    let e = upload(&source, &url(&s.data_url("out/a.bin")), key)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("is a folder"), "{e}");
    assert_eq!(names_in(&s.data_dir().join("out")), ["a.bin"]);
    assert!(fs::read(&source).unwrap() == data, "the source is kept");

    // Reading the source fails after the temporary file was opened.
    let folder = local.path().join("folder");
    fs::create_dir(&folder).unwrap();
    let e = upload(&folder, &url(&s.data_url("out/b.bin")), key)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&folder.display().to_string()),
        "{e}"
    );
    assert_eq!(names_in(&s.data_dir().join("out")), ["a.bin"]);

    // A missing source: nothing is created on the server.
    let e = upload(
        &local.path().join("missing"),
        &url(&s.data_url("new/c.bin")),
        key,
    )
    .await
    .unwrap_err();
    assert!(e.is_not_found() && !e.is_retryable(), "{e}");
    assert!(!s.data_dir().join("new").exists());
}

#[tokio::test]
async fn a_failed_download_leaves_no_local_file() {
    let Some(s) = server("a_failed_download_leaves_no_local_file") else {
        return;
    };
    let key = s.client_key();
    let local = tempfile::tempdir().unwrap();
    let target = local.path().join("a.tmp");
    let e = download(&url(&s.data_url("missing.bin")), key, &target)
        .await
        .unwrap_err();
    assert!(e.is_not_found() && !e.is_retryable(), "{e}");
    let e = download(&url(&s.data_url("")), key, &target)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    // The local side fails: the folder is missing.
    fs::write(s.data_dir().join("a.bin"), "x").unwrap();
    let e = download(
        &url(&s.data_url("a.bin")),
        key,
        &local.path().join("no/a.tmp"),
    )
    .await
    .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string()
            .starts_with(&local.path().display().to_string()),
        "{e}"
    );
    assert!(names_in(local.path()).is_empty());
    assert!(s.data_dir().join("a.bin").exists(), "the source is kept");
}

#[tokio::test]
async fn an_upload_into_a_folder_the_account_cannot_write_is_refused_for_good() {
    let test = "an_upload_into_a_folder_the_account_cannot_write_is_refused_for_good";
    let Some((user, password)) = sshd::password_account(test) else {
        return;
    };
    let Some(s) = server(test) else {
        return;
    };
    // Owned by this process's user (root in CI), read-only for others.
    let locked = s.data_dir().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("a.bin");
    fs::write(&source, patterned(CHUNK * 2)).unwrap();
    let mut target = url(&s.data_url("locked/a.bin"));
    target.user = user;
    let e = upload(&source, &target, &password).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(!e.is_retryable());
    assert!(names_in(&locked).is_empty(), "no temporary file");
    assert!(source.exists(), "the source is kept");
}

/// A source that gives `pieces` small reads `every` apart, then ends; or
/// stalls for good after them when `stall`.
struct Trickle {
    pieces: usize,
    every: Duration,
    stall: bool,
    next: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if self.pieces == 0 {
            return if self.stall {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            };
        }
        let every = self.every;
        let sleep = self
            .next
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.next = None;
        self.pieces -= 1;
        buf.put_slice(&[7u8; 1024]);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_transfer_times_out_when_it_stops_moving_not_when_it_is_slow() {
    TEST_STALL_TIMEOUT.with(|t| t.set(Some(Duration::from_millis(200))));
    let from = url("sftp://u@127.0.0.1:1/slow.bin");
    let to = std::path::Path::new("/tmp/target.bin");
    // 10 reads 60 ms apart: 600 ms in all, never 200 ms without progress.
    let mut slow = Trickle {
        pieces: 10,
        every: Duration::from_millis(60),
        stall: false,
        next: None,
    };
    let mut sink = Vec::new();
    let copied = pump(&mut slow, &from, &mut sink, &to.display())
        .await
        .unwrap();
    assert_eq!((copied, sink.len()), (10 * 1024, 10 * 1024));

    // Two reads, then nothing.
    let mut stalled = Trickle {
        pieces: 2,
        every: Duration::from_millis(10),
        stall: true,
        next: None,
    };
    let started = std::time::Instant::now();
    let e = pump(&mut stalled, &from, &mut Vec::new(), &to.display())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable());
    assert_eq!(
        e.to_string(),
        "sftp://u@127.0.0.1:1/slow.bin: no progress within 200ms"
    );
    TEST_STALL_TIMEOUT.with(|t| t.set(None));
}

#[tokio::test]
async fn a_transfer_dropped_halfway_leaves_no_temporary_file() {
    let Some(s) = server("a_transfer_dropped_halfway_leaves_no_temporary_file") else {
        return;
    };
    let key = s.client_key();
    let target = url(&s.data_url("out/a.bin"));
    let (conn, _) = session(&target, key).await.unwrap();
    // One read, then nothing: still running when the attempt's time is up.
    let mut stalled = Trickle {
        pieces: 1,
        every: Duration::from_millis(10),
        stall: true,
        next: None,
    };
    let attempt = replace_with(&conn, &target, &mut stalled, &"the source");
    let ended = tokio::time::timeout(Duration::from_millis(500), attempt).await;
    assert!(ended.is_err(), "the transfer should still be running");
    let out = s.data_dir().join("out");
    assert_eq!(names_in(&out).len(), 1, "the temporary file was written");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !names_in(&out).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {:?}",
            names_in(&out)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
