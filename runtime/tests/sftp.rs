//! `file.*` steps on `sftp://` URLs through the engine (the stdlib StepFns
//! and their journal), against a real OpenSSH sshd on a loopback port
//! (`FLOW_TEST_SSHD`; skipped with a printed reason when unset). The SFTP
//! client itself is tested in `src/sftp/tests.rs`.

#[path = "../../tests/support/sshd.rs"]
mod sshd;

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use flow_runtime::engine::new_execution_id;
use flow_runtime::steps::CsvRows;
use flow_runtime::store::{Execution, StepRecord};
use flow_runtime::{
    json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, Runtime, Schema,
    Status, StepOptions, Value,
};
use sshd::Sshd;

/// The `.text` of a File value, as a flow reads it.
fn text(file: &Value) -> String {
    flow_runtime::ops::file_content(file, "text")
        .expect("a File with content")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The known_hosts file of this test process, named by
/// `FLOW_SFTP_KNOWN_HOSTS` (the runtime reads it from the process
/// environment, shared by the tests running in parallel): each test adds
/// its server with [`trust`].
fn known_hosts() -> &'static Mutex<PathBuf> {
    static FILE: OnceLock<Mutex<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("known_hosts");
        std::fs::write(&path, "").unwrap();
        std::env::set_var("FLOW_SFTP_KNOWN_HOSTS", &path);
        Mutex::new(path)
    })
}

/// Lists `s`'s host key in the known_hosts file, as an operator would.
fn trust(s: &Sshd) {
    let path = known_hosts().lock().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&*path)
        .unwrap();
    writeln!(file, "{}", s.known_hosts_line()).unwrap();
}

/// Two retries 10 ms apart: a permanent error must still end after one attempt.
fn quick_retries() -> StepOptions {
    StepOptions {
        retry: 2,
        backoff_min: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(10),
        ..StepOptions::default()
    }
}

/// `input.remote` (an `sftp://…/dir` URL) joined with `rel`.
fn remote(cx: &Ctx, rel: &str) -> Value {
    let input = ops::field(cx.trigger(), "input");
    Value::String(ops::interp(&[ops::field(&input, "remote"), json!(rel)]))
}

fn local(cx: &Ctx, rel: &str) -> Value {
    let input = ops::field(cx.trigger(), "input");
    Value::String(ops::interp(&[ops::field(&input, "local"), json!(rel)]))
}

fn key(cx: &Ctx) -> Value {
    ops::field(cx.config(), "sftp_key")
}

/// Every file step on the server, and moves both ways with a local folder.
fn exchange(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let auth = key(&cx);
        let step = |name: &'static str, call: &'static str, args: Args| {
            let cx = cx.clone();
            async move { cx.step(name, quick_retries(), call, args).await }
        };
        let report = remote(&cx, "/out/report.csv");
        step(
            "write",
            "file.write",
            Args::new()
                .arg(report.clone())
                .arg(json!("a,b\n"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "append",
            "file.append",
            Args::new()
                .arg(report.clone())
                .arg(json!("1,2\n"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "list",
            "file.list",
            Args::new()
                .arg(remote(&cx, "/out/*.csv"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "read",
            "file.read",
            Args::new().arg(report.clone()).kw("auth", auth.clone()),
        )
        .await?;
        step(
            "rename",
            "file.move",
            Args::new()
                .arg(report)
                .arg(remote(&cx, "/done/report.csv"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "download",
            "file.move",
            Args::new()
                .arg(remote(&cx, "/done/report.csv"))
                .arg(local(&cx, "/in/report.csv"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "upload",
            "file.move",
            Args::new()
                .arg(local(&cx, "/in/report.csv"))
                .arg(remote(&cx, "/up/report.csv"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "delete",
            "file.delete",
            Args::new()
                .arg(remote(&cx, "/up/report.csv"))
                .kw("auth", auth.clone()),
        )
        .await?;
        step(
            "delete_again",
            "file.delete",
            Args::new()
                .arg(remote(&cx, "/up/report.csv"))
                .kw("auth", auth),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

/// `input.remote2` (another server's `sftp://…/dir`) joined with `rel`.
fn remote2(cx: &Ctx, rel: &str) -> Value {
    let input = ops::field(cx.trigger(), "input");
    Value::String(ops::interp(&[ops::field(&input, "remote2"), json!(rel)]))
}

/// A large file moved up, listed, moved to another server and back down.
fn streams(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let auth = key(&cx);
        let moves = [
            ("up", local(&cx, "/big.bin"), remote(&cx, "/up/big.bin")),
            (
                "across",
                remote(&cx, "/up/big.bin"),
                remote2(&cx, "/across/big.bin"),
            ),
            (
                "down",
                remote2(&cx, "/across/big.bin"),
                local(&cx, "/back/big.bin"),
            ),
        ];
        for (name, from, to) in moves {
            let args = Args::new().arg(from).arg(to).kw("auth", auth.clone());
            cx.step(name, quick_retries(), "file.move", args).await?;
            if name == "up" {
                let args = Args::new()
                    .arg(remote(&cx, "/up/*.bin"))
                    .kw("auth", auth.clone());
                cx.step("listed", quick_retries(), "file.list", args)
                    .await?;
            }
        }
        Ok(Outcome::Succeeded)
    })
}

/// An upload onto a folder of the same name.
fn upload_onto_folder(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new()
            .arg(local(&cx, "/keep.bin"))
            .arg(remote(&cx, "/out/keep.bin"))
            .kw("auth", key(&cx));
        cx.step("up", quick_retries(), "file.move", args).await?;
        Ok(Outcome::Succeeded)
    })
}

fn read_missing(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new()
            .arg(remote(&cx, "/nope.csv"))
            .kw("auth", key(&cx));
        cx.step("fetch", quick_retries(), "file.read", args).await?;
        Ok(Outcome::Succeeded)
    })
}

fn without_auth(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new().arg(remote(&cx, "/a.csv"));
        cx.step("fetch", quick_retries(), "file.read", args).await?;
        Ok(Outcome::Succeeded)
    })
}

/// `file.list` with `**`: a local tree, then the same asked of the server.
fn list_trees(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new().arg(local(&cx, "/tree/**/*.csv"));
        cx.step("local", quick_retries(), "file.list", args).await?;
        let args = Args::new()
            .arg(remote(&cx, "/tree/**/*.csv"))
            .kw("auth", key(&cx));
        cx.step("remote", quick_retries(), "file.list", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    let def = common::dispatched;
    vec![
        def("exchange", exchange),
        def("read_missing", read_missing),
        def("without_auth", without_auth),
        def("unreachable", read_missing),
        def("streams", streams),
        def("upload_onto_folder", upload_onto_folder),
        def("list_trees", list_trees),
    ]
}

fn integration() -> Integration {
    Integration {
        config: vec![common::config_entry("sftp_key", Schema::Secret)],
        ..common::integration("sftp_steps", flows)
    }
}

async fn run(rt: &Runtime, flow: &str, s: &Sshd, local: &Path) -> (Execution, Vec<StepRecord>) {
    run_with(rt, flow, s, s, local).await
}

/// [`run`] with `other` as `input.remote2`.
async fn run_with(
    rt: &Runtime,
    flow: &str,
    s: &Sshd,
    other: &Sshd,
    local: &Path,
) -> (Execution, Vec<StepRecord>) {
    let input = json!({
        "remote": data_url(s),
        "remote2": data_url(other),
        "local": local.display().to_string(),
    });
    let id = new_execution_id();
    let exec = rt
        .run_inline(id.clone(), flow, json!({ "input": input }))
        .await
        .expect("run");
    let journal = rt.store().journal(&id).await.expect("journal");
    (exec, journal)
}

/// `sftp://USER@127.0.0.1:PORT/<data dir>`.
fn data_url(s: &Sshd) -> String {
    format!(
        "sftp://{}@127.0.0.1:{}{}",
        s.user(),
        s.port(),
        s.data_dir().display()
    )
}

fn output<'a>(journal: &'a [StepRecord], key: &str) -> &'a Value {
    journal
        .iter()
        .find(|r| r.key == key)
        .and_then(|r| r.output.as_ref())
        .unwrap_or_else(|| panic!("no output for step {key}: {journal:#?}"))
}

/// A test's sshd, trusted, and a runtime whose `sftp_key` is its client
/// key; `None` (the test skipped) without `FLOW_TEST_SSHD`.
fn server_and_runtime(test: &str) -> Option<(Sshd, Runtime)> {
    let s = Sshd::start(test)?;
    trust(&s);
    let rt = Runtime::new(
        integration(),
        common::options(&[("SFTP_KEY", s.client_key())]),
    )
    .unwrap();
    Some((s, rt))
}

#[tokio::test]
async fn file_steps_work_on_sftp_urls() {
    let Some((s, rt)) = server_and_runtime("file_steps_work_on_sftp_urls") else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    let data = s.data_dir();
    let url = |rel: &str| {
        format!(
            "sftp://{}@127.0.0.1:{}{}{rel}",
            s.user(),
            s.port(),
            data.display()
        )
    };

    let (exec, journal) = run(&rt, "exchange", &s, local.path()).await;
    assert_eq!(exec.status, Status::Succeeded, "{exec:#?}\n{}", s.log());

    let written = output(&journal, "write");
    assert_eq!(written["path"], json!(url("/out/report.csv")));
    assert_eq!(written["name"], json!("report.csv"));
    assert_eq!(written["size"], json!(4));
    assert_eq!(text(written), "a,b\n");
    assert!(written["modified"].is_string(), "{written}");
    assert_eq!(text(output(&journal, "append")), "a,b\n1,2\n");
    let listed = output(&journal, "list").as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(text(&listed[0]), "a,b\n1,2\n");
    assert_eq!(listed[0]["bytes"], json!("YSxiCjEsMgo="));
    assert_eq!(output(&journal, "read")["size"], json!(8));
    assert_eq!(
        output(&journal, "rename")["path"],
        json!(url("/done/report.csv"))
    );
    let downloaded = output(&journal, "download");
    let local_report = local.path().join("in/report.csv");
    assert_eq!(
        downloaded["path"],
        json!(local_report.display().to_string())
    );
    assert_eq!(
        output(&journal, "upload")["path"],
        json!(url("/up/report.csv"))
    );
    assert_eq!(text(output(&journal, "upload")), "a,b\n1,2\n");
    assert_eq!(output(&journal, "delete"), &json!(true));
    assert_eq!(output(&journal, "delete_again"), &json!(false));
    // Every move removed its source; the last delete removed the upload.
    assert!(!local_report.exists());
    for rel in ["out/report.csv", "done/report.csv", "up/report.csv"] {
        assert!(!data.join(rel).exists(), "{rel} is still there");
    }
}

#[tokio::test]
async fn sftp_step_errors_are_permanent_and_name_the_url() {
    let Some((s, rt)) = server_and_runtime("sftp_step_errors_are_permanent_and_name_the_url")
    else {
        return;
    };
    let local = tempfile::tempdir().unwrap();

    let (exec, journal) = run(&rt, "read_missing", &s, local.path()).await;
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    let missing = format!(
        "sftp://{}@127.0.0.1:{}{}/nope.csv",
        s.user(),
        s.port(),
        s.data_dir().display()
    );
    assert!(
        error.contains(&format!("file.read: {missing}: No such file")),
        "{error}"
    );
    assert_eq!(journal[0].attempts, 1, "a missing file is not retried");

    let (exec, journal) = run(&rt, "without_auth", &s, local.path()).await;
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    assert!(error.contains("needs `auth:`"), "{error}");
    assert_eq!(journal[0].attempts, 1);
}

/// `**` lists a local tree through the step; on a server it is refused at
/// once (it would list folder after folder over the network), naming why.
#[tokio::test]
async fn double_stars_list_local_trees_and_are_refused_on_a_server() {
    let Some((s, rt)) =
        server_and_runtime("double_stars_list_local_trees_and_are_refused_on_a_server")
    else {
        return;
    };
    let local = tempfile::tempdir().unwrap();
    for f in [
        "tree/a.csv",
        "tree/x/b.csv",
        "tree/x/y/c.csv",
        "tree/x/y/d.txt",
    ] {
        let path = local.path().join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "h\n").unwrap();
    }
    let (exec, journal) = run(&rt, "list_trees", &s, local.path()).await;
    let listed: Vec<String> = output(&journal, "local")
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or_default();
            path.strip_prefix(&local.path().display().to_string())
                .unwrap_or(path)
                .to_string()
        })
        .collect();
    assert_eq!(listed, ["/tree/a.csv", "/tree/x/b.csv", "/tree/x/y/c.csv"]);
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    assert!(
        error.contains("`**` lists local subfolders only"),
        "{error}"
    );
    let remote = journal.iter().find(|r| r.key == "remote").expect("remote");
    assert_eq!(remote.attempts, 1, "not retried");
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    let rt = Runtime::new(
        integration(),
        common::options(&[("SFTP_KEY", "a password")]),
    )
    .unwrap();
    let port = flow_testkit::free_port();
    // Nothing listens on the port once the listener is dropped.
    let id = new_execution_id();
    let input = json!({ "remote": format!("sftp://u@127.0.0.1:{port}/in"), "local": "." });
    let exec = rt
        .run_inline(id.clone(), "unreachable", json!({ "input": input }))
        .await
        .expect("run");
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "file.read: sftp://u@127.0.0.1:{port}: cannot connect"
        )),
        "{error}"
    );
    let journal = rt.store().journal(&id).await.expect("journal");
    assert_eq!(journal[0].attempts, 3, "retried twice: {journal:#?}");
}

#[tokio::test]
async fn an_untrusted_host_key_fails_the_step_for_good() {
    let Some(s) = Sshd::start("an_untrusted_host_key_fails_the_step_for_good") else {
        return;
    };
    // The known_hosts file is in use, but this server is not in it.
    drop(known_hosts().lock().unwrap());
    let rt = Runtime::new(
        integration(),
        common::options(&[("SFTP_KEY", s.client_key())]),
    )
    .unwrap();
    let local = tempfile::tempdir().unwrap();

    let (exec, journal) = run(&rt, "read_missing", &s, local.path()).await;
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    let server = format!("sftp://{}@127.0.0.1:{}", s.user(), s.port());
    assert!(
        error.contains(&format!(
            "file.read: {server}: the server's host key SHA256:"
        )),
        "{error}"
    );
    assert!(error.contains("is unknown"), "{error}");
    assert!(
        error.contains("FLOW_SFTP_HOST_KEYS=[127.0.0.1]:"),
        "{error}"
    );
    assert_eq!(journal[0].attempts, 1, "an untrusted key is not retried");
    // Refused before logging in: the credential never went to that server.
    assert!(!s.log().contains("Accepted publickey"), "{}", s.log());
}

/// `len` bytes that repeat only every 251 bytes.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// The names in `dir`, sorted (none when it is missing).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn large_files_move_streamed_and_are_passed_by_reference() {
    let test = "large_files_move_streamed_and_are_passed_by_reference";
    let (Some(s), Some(other)) = (Sshd::start(test), Sshd::start(test)) else {
        return;
    };
    trust(&s);
    trust(&other);
    other.authorize(&s.client_public_key());
    let rt = Runtime::new(
        integration(),
        common::options(&[("SFTP_KEY", s.client_key())]),
    )
    .unwrap();
    let local = tempfile::tempdir().unwrap();
    // Over INLINE_LIMIT (8 MiB), and not a whole number of 256 KiB chunks.
    let data = patterned(9 * 1024 * 1024 + 12_345);
    std::fs::write(local.path().join("big.bin"), &data).unwrap();

    let (exec, journal) = run_with(&rt, "streams", &s, &other, local.path()).await;
    assert_eq!(exec.status, Status::Succeeded, "{exec:#?}");

    let size = json!(data.len());
    let back = local.path().join("back/big.bin");
    let up = format!("{}/up/big.bin", data_url(&s));
    let across = format!("{}/across/big.bin", data_url(&other));
    let listed = output(&journal, "listed").as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    for (file, path) in [
        (output(&journal, "up"), up.clone()),
        (&listed[0], up),
        (output(&journal, "across"), across),
        (output(&journal, "down"), back.display().to_string()),
    ] {
        assert_eq!(file["path"], json!(path), "{file}");
        assert_eq!(file["name"], json!("big.bin"), "{file}");
        assert_eq!(file["size"], size, "{file}");
        assert!(file["modified"].is_string(), "{file}");
        // A reference: the contents are not in the run.
        assert!(
            file.get("text").is_none() && file.get("bytes").is_none(),
            "{file}"
        );
    }
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the file came back different"
    );
    // Every source is gone, and no temporary file is left anywhere.
    assert_eq!(names(local.path()), ["back"]);
    assert_eq!(names(&local.path().join("back")), ["big.bin"]);
    assert!(names(&s.data_dir().join("up")).is_empty());
    assert!(names(&other.data_dir().join("across")).is_empty());
}

#[tokio::test]
async fn a_failed_upload_keeps_the_source_and_leaves_no_temporary_file() {
    let test = "a_failed_upload_keeps_the_source_and_leaves_no_temporary_file";
    let Some(s) = Sshd::start(test) else {
        return;
    };
    trust(&s);
    let rt = Runtime::new(
        integration(),
        common::options(&[("SFTP_KEY", s.client_key())]),
    )
    .unwrap();
    let local = tempfile::tempdir().unwrap();
    let data = patterned(600 * 1024);
    std::fs::write(local.path().join("keep.bin"), &data).unwrap();
    std::fs::create_dir_all(s.data_dir().join("out/keep.bin")).unwrap();

    let (exec, journal) = run(&rt, "upload_onto_folder", &s, local.path()).await;
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "file.move: {}/out/keep.bin: is a folder",
            data_url(&s)
        )),
        "{error}"
    );
    assert_eq!(journal[0].attempts, 1, "a permanent error is not retried");
    assert_eq!(names(&s.data_dir().join("out")), ["keep.bin"]);
    assert!(std::fs::read(local.path().join("keep.bin")).unwrap() == data);
}

/// `csv.rows` over a big CSV file on an SFTP server (a File reference):
/// streamed to a temporary local copy, read row by row, the copy gone
/// afterwards; without `auth:` or for another version of the file, refused.
#[tokio::test]
async fn csv_rows_read_a_big_remote_file_through_a_temporary_copy() {
    let Some(s) = Sshd::start("csv_rows_read_a_big_remote_file_through_a_temporary_copy") else {
        return;
    };
    trust(&s);
    let mut text = String::from("id,note\n");
    let mut rows = 0u64;
    while text.len() < 9 * 1024 * 1024 {
        rows += 1;
        text.push_str(&format!("{rows},{}\n", "x".repeat(100)));
    }
    std::fs::create_dir_all(s.data_dir().join("in")).unwrap();
    std::fs::write(s.data_dir().join("in/big.csv"), &text).unwrap();
    let reference = |size: usize| {
        json!({
            "path": format!("{}/in/big.csv", data_url(&s)),
            "name": "big.csv",
            "size": size,
            "modified": null,
        })
    };
    let temp_copies = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("flow-") && name.ends_with(".csv")
            })
            .count()
    };
    let before = temp_copies();

    let args = Args::new()
        .arg(reference(text.len()))
        .kw("auth", json!(s.client_key()));
    let mut reader = CsvRows::open("csv.rows", args).await.unwrap();
    let mut n = 0u64;
    while let Some(row) = reader.next_row().await.unwrap() {
        n += 1;
        assert_eq!(row["id"], json!(n.to_string()));
    }
    assert_eq!(n, rows);
    assert_eq!(temp_copies(), before, "the temporary copy is gone");

    let no_auth = CsvRows::open("csv.rows", Args::new().arg(reference(text.len())))
        .await
        .err()
        .expect("refused without auth")
        .to_string();
    assert!(no_auth.contains("pass `auth:`"), "{no_auth}");
    let changed = CsvRows::open(
        "csv.rows",
        Args::new()
            .arg(reference(text.len() - 1))
            .kw("auth", json!(s.client_key())),
    )
    .await
    .err()
    .expect("another version is refused")
    .to_string();
    assert!(
        changed.contains("changed since the run took it"),
        "{changed}"
    );
    assert_eq!(temp_copies(), before, "no copy left after a refusal");
}
