//! End to end: `file.move` streams (issues #19 and #20). A 2 GiB file goes
//! from a local folder to a real SFTP server (sshd on loopback) and back
//! (`tests/flows/big_move.flow`), and a 1 GiB file to an S3 bucket (the
//! emulator of `FLOW_TEST_AWS_ENDPOINT`, in 8 MiB multipart parts) and back
//! (`tests/flows/big_move_s3.flow`), one `BINARY run FLOW` each way. For
//! each run the binary's peak resident memory, read exactly from the kernel
//! when the test reaps it (`wait4`'s `ru_maxrss`), must stay under 64 MiB;
//! the file must arrive whole, every 1 MiB block compared, and the source
//! must be gone. Each test is skipped, saying why, without its server.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The size of the file moved through SFTP.
const SFTP_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// The size of the file moved through S3 (the emulator keeps objects in
/// memory and is slower than sshd: half the SFTP file's size).
const S3_SIZE: u64 = 1024 * 1024 * 1024;
/// The file is written and checked in blocks of this size.
const BLOCK: usize = 1024 * 1024;
/// The bound on the binary's peak resident memory, in KiB (`ru_maxrss`).
const MAX_RSS_KIB: i64 = 64 * 1024;
/// How long one move may take (a debug binary; about a minute on loopback).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn a_two_gib_file_moves_to_sftp_and_back_in_bounded_memory() {
    let test = "a_two_gib_file_moves_to_sftp_and_back_in_bounded_memory";
    let Some(server) = sshd::Sshd::start(test) else {
        return;
    };
    let binary = support::build_example("tests/flows/big_move.flow");
    let work = tempfile::tempdir().expect("temp dir");
    let local = work.path().join("local");
    std::fs::create_dir(&local).expect("create the local folder");
    let source = local.join("big.bin");
    write_big_file(&source, SFTP_SIZE);
    let known_hosts = server.scratch("kh").join("known_hosts");
    std::fs::write(&known_hosts, server.known_hosts_line()).expect("write known_hosts");
    let folder = server.data_url("inbox");
    let env = [
        ("LOCAL_FOLDER", local.to_str().expect("UTF-8 path")),
        ("SFTP_FOLDER", folder.as_str()),
        ("SFTP_KEY", server.client_key()),
        (
            "FLOW_SFTP_KNOWN_HOSTS",
            known_hosts.to_str().expect("UTF-8 path"),
        ),
    ];

    let up = run_measured(&binary, &env, "upload", work.path());
    up.report("local → SFTP", SFTP_SIZE);
    let uploaded = server.data_dir().join("inbox/big.bin");
    assert_whole(&uploaded, SFTP_SIZE);
    assert!(!source.exists(), "the local source is still there");
    assert_eq!(names(&server.data_dir().join("inbox")), ["big.bin"]);

    let down = run_measured(&binary, &env, "download", work.path());
    down.report("SFTP → local", SFTP_SIZE);
    let back = local.join("back/big.bin");
    assert_whole(&back, SFTP_SIZE);
    assert!(!uploaded.exists(), "the remote source is still there");
    assert_eq!(names(&local.join("back")), ["big.bin"]);
    assert_bounded(&up, &down);
}

#[test]
fn a_one_gib_file_moves_to_s3_and_back_in_bounded_memory() {
    let test = "a_one_gib_file_moves_to_s3_and_back_in_bounded_memory";
    let Some(endpoint) = flow_testkit::service_url("FLOW_TEST_AWS_ENDPOINT", test) else {
        return;
    };
    let binary = support::build_example("tests/flows/big_move_s3.flow");
    let work = tempfile::tempdir().expect("temp dir");
    let local = work.path().join("local");
    std::fs::create_dir(&local).expect("create the local folder");
    let source = local.join("big.bin");
    write_big_file(&source, S3_SIZE);
    let bucket = format!("big-{}", std::process::id());
    let bucket_url = format!("{endpoint}/{bucket}");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test's own requests");
    // The emulator takes unsigned requests.
    let created = tokio.block_on(flow_testkit::request("PUT", &bucket_url, None, &[]));
    assert!(created.status < 300, "PUT {bucket_url}: {}", created.status);
    let keys = || {
        let answer = tokio.block_on(flow_testkit::get(&format!("{bucket_url}?list-type=2"), &[]));
        answer
            .body
            .as_str()
            .unwrap_or_default()
            .matches("<Key>")
            .count()
    };
    let local_path = local.to_str().expect("UTF-8 path");
    let env = [
        ("LOCAL_FOLDER", local_path),
        ("BUCKET", bucket.as_str()),
        ("AWS_KEY", "AKIDBIGFILE"),
        ("AWS_SECRET", "big-file-secret"),
        ("AWS_ENDPOINT", endpoint.as_str()),
    ];

    let up = run_measured(&binary, &env, "upload", work.path());
    up.report("local → S3", S3_SIZE);
    assert!(!source.exists(), "the local source is still there");
    assert_eq!(keys(), 1, "the object is in the bucket");

    let down = run_measured(&binary, &env, "download", work.path());
    down.report("S3 → local", S3_SIZE);
    assert_whole(&local.join("back/big.bin"), S3_SIZE);
    assert_eq!(keys(), 0, "the object is still in the bucket");
    assert_bounded(&up, &down);
}

/// Fails unless both runs stayed under [`MAX_RSS_KIB`].
fn assert_bounded(up: &Measured, down: &Measured) {
    for (run, what) in [(up, "upload"), (down, "download")] {
        assert!(
            run.max_rss_kib < MAX_RSS_KIB,
            "the {what} peaked at {} KiB of resident memory (bound: {MAX_RSS_KIB} KiB)",
            run.max_rss_kib
        );
    }
}

/// Block `index` of the file: a fixed pseudo-random block with the
/// block's index in its first 8 bytes, so that no two blocks are alike and
/// a block in the wrong place is caught.
fn block(base: &[u8], index: u64, into: &mut Vec<u8>) {
    into.clear();
    into.extend_from_slice(base);
    into[..8].copy_from_slice(&index.to_le_bytes());
}

/// The pseudo-random block (xorshift64) every block starts from.
fn base_block() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(BLOCK);
    while out.len() < BLOCK {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

/// Writes the `size` bytes of the test file (real data, not sparse).
fn write_big_file(path: &Path, size: u64) {
    let started = Instant::now();
    let base = base_block();
    let mut data = Vec::with_capacity(BLOCK);
    let mut file = File::create(path).expect("create the big file");
    for index in 0..size / BLOCK as u64 {
        block(&base, index, &mut data);
        file.write_all(&data).expect("write the big file");
    }
    file.sync_all().expect("sync the big file");
    eprintln!(
        "wrote {} in {:.1}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Fails unless `path` holds exactly the bytes [`write_big_file`] wrote.
fn assert_whole(path: &Path, expected_size: u64) {
    let size = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert_eq!(size, expected_size, "{} has the wrong size", path.display());
    let base = base_block();
    let (mut expected, mut got) = (Vec::with_capacity(BLOCK), vec![0u8; BLOCK]);
    let mut file = File::open(path).expect("open the moved file");
    for index in 0..expected_size / BLOCK as u64 {
        block(&base, index, &mut expected);
        file.read_exact(&mut got).expect("read the moved file");
        assert!(got == expected, "{}: block {index} differs", path.display());
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// How one run of the binary went.
struct Measured {
    /// Peak resident memory in KiB, as the kernel counted it.
    max_rss_kib: i64,
    elapsed: Duration,
}

impl Measured {
    fn report(&self, what: &str, size: u64) {
        let secs = self.elapsed.as_secs_f64();
        let mib = size as f64 / 1024.0 / 1024.0;
        // Printed for the record (`--nocapture` shows it).
        println!(
            "{what}: {mib:.0} MiB in {secs:.1}s ({:.0} MiB/s), peak RSS {:.1} MiB",
            mib / secs,
            self.max_rss_kib as f64 / 1024.0
        );
    }
}

/// Runs `BINARY run FLOW` in `dir` with only `env` (and PATH, HOME) in its
/// environment, reaps it with `wait4` for its peak resident memory, and
/// fails the test unless the run succeeded within [`RUN_TIMEOUT`].
// The child is reaped by `wait4` (for its resource usage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(binary: &Path, env: &[(&str, &str)], flow: &str, dir: &Path) -> Measured {
    let out_path = dir.join(format!("{flow}.stdout"));
    let err_path = dir.join(format!("{flow}.stderr"));
    let mut cmd = Command::new(binary);
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .envs(env.iter().copied())
        .args(["run", flow])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create the stdout file"))
        .stderr(File::create(&err_path).expect("create the stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    let (status, usage) = loop {
        if let Some(done) = reap(pid) {
            break done;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = reap_blocking(pid);
            panic!(
                "`run {flow}` did not finish within {RUN_TIMEOUT:?}\n{}",
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let stdout = read(&out_path);
    let exited = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    assert_eq!(
        exited,
        Some(0),
        "`run {flow}` failed\nstdout:\n{stdout}\nstderr:\n{}",
        read(&err_path)
    );
    let outcome: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("`run {flow}` printed no JSON outcome ({e}):\n{stdout}"));
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    Measured {
        max_rss_kib: usage.ru_maxrss,
        elapsed,
    }
}

/// The exit status and resource usage of child `pid` once it has ended
/// (`None` while it runs).
fn reap(pid: libc::pid_t) -> Option<(i32, libc::rusage)> {
    wait4(pid, libc::WNOHANG)
}

fn reap_blocking(pid: libc::pid_t) -> Option<(i32, libc::rusage)> {
    wait4(pid, 0)
}

fn wait4(pid: libc::pid_t, options: i32) -> Option<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, writable locals of the right type.
    let reaped = unsafe { libc::wait4(pid, &mut status, options, &mut usage) };
    assert!(
        reaped >= 0,
        "wait4({pid}): {}",
        std::io::Error::last_os_error()
    );
    (reaped == pid).then_some((status, usage))
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
