//! Running a binary built on the runtime (a generated integration or one
//! of the runtime's examples) as a real process: `serve` on a free
//! loopback port, ready once it prints `listening on http://ADDR`, or a
//! command run to its end. Both are bounded in time and see only the
//! environment the test gives them.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lock;

/// How long a binary may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(40);

/// Environment variables passed through to the binaries: everything else
/// is cleared, so the developer's environment cannot change a test.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "RUST_BACKTRACE", "RUST_LOG"];

fn command(binary: &Path, env: &[(&str, &str)], args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear();
    for var in PASSED_THROUGH {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collects a child's output stream on a thread (so its pipe never fills
/// up); `lines` gets every line as it arrives.
fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    lock(&into).push_str(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(line.trim_end().to_string());
                    }
                }
            }
        }
        // Whatever was not valid UTF-8 up to here is dropped.
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        lock(&into).push_str(&String::from_utf8_lossy(&rest));
    })
}

/// A binary built on the runtime running `serve --addr 127.0.0.1:0` in a
/// (temporary) working directory. Killed when dropped.
pub struct Service {
    child: Child,
    url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
    /// The temporary working directory, when the service made its own.
    _owned_dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Starts `binary serve --addr 127.0.0.1:0 ARGS...` with only `env`
    /// (plus PATH, HOME, RUST_BACKTRACE, RUST_LOG) in its environment and
    /// waits (at most [`START_TIMEOUT`]) until it prints `listening on
    /// http://ADDR`. Panics with the child's stderr if it exits first or
    /// does not get ready in time.
    pub fn start(binary: &Path, env: &[(&str, &str)], args: &[&str]) -> Service {
        let dir = tempfile::tempdir().expect("temporary working directory");
        let mut svc = Service::start_in(dir.path(), binary, env, args);
        svc._owned_dir = Some(dir);
        svc
    }

    /// [`Service::start`] in the working directory `dir` (kept after the
    /// service ends: a restart in the same folder finds its store and files).
    pub fn start_in(dir: &Path, binary: &Path, env: &[(&str, &str)], args: &[&str]) -> Service {
        let mut all_args = vec!["serve", "--addr", "127.0.0.1:0"];
        all_args.extend_from_slice(args);
        let mut child = command(binary, env, &all_args, dir)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let out_thread = collect(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            Some(tx),
        );
        let err_thread = collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        break rest.trim().to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the child has exited (or is about to).
                    let status = child.wait().ok();
                    let _ = out_thread.join();
                    let _ = err_thread.join();
                    panic!(
                        "{} exited before listening ({status:?})\nstdout:\n{}\nstderr:\n{}",
                        binary.display(),
                        lock(&stdout),
                        lock(&stderr)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = err_thread.join();
                    panic!(
                        "{} did not print `listening on` within {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                        binary.display(),
                        lock(&stdout),
                        lock(&stderr)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected listening line: {url}"
        );
        Service {
            child,
            url,
            stdout,
            stderr,
            dir: dir.to_path_buf(),
            _owned_dir: None,
        }
    }

    /// Kills the binary with SIGKILL (a crash) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`, `-STOP`, `-CONT`) to
    /// the binary; the test fails if it cannot be sent.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// The most memory the binary has held so far (its `VmHWM`, the peak
    /// resident set, from `/proc`), in bytes: read it just before stopping
    /// the binary for its peak over its whole life.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the service's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .expect("VmHWM in /proc status")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `url()` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends SIGTERM and waits (at most `timeout`, else the test fails)
    /// for the binary to exit; returns how it exited.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {timeout:?} of SIGTERM\nstderr:\n{}",
                lock(&self.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The binary's (temporary) working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the binary logged so far (for diagnosis and log assertions).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// What the binary printed on stdout so far.
    pub fn stdout(&self) -> String {
        lock(&self.stdout).clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- stderr of the service at {} ---", self.url);
            eprintln!("{}", lock(&self.stderr));
        }
    }
}

/// How a command run to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `binary ARGS...` to its end (at most `timeout`, then it is killed
/// and the test fails) with only `env` in its environment, in a temporary
/// working directory.
pub fn run_binary(
    binary: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    timeout: Duration,
) -> Finished {
    let dir = tempfile::tempdir().expect("temporary working directory");
    run_binary_in(dir.path(), binary, env, args, timeout)
}

/// [`run_binary`] in the working directory `dir` (e.g. where a service
/// keeps its store).
pub fn run_binary_in(
    dir: &Path,
    binary: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    timeout: Duration,
) -> Finished {
    let mut child = command(binary, env, args, dir)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let threads = [
        collect(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            None,
        ),
        collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        ),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                binary.display(),
                lock(&stdout),
                lock(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for t in threads {
        let _ = t.join();
    }
    let stdout = lock(&stdout).clone();
    let stderr = lock(&stderr).clone();
    Finished {
        code: status.code(),
        stdout,
        stderr,
    }
}
