//! The `flowc` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use flowc::build::BuildOptions;
use flowc::check::parse_and_check_in;
use flowc::diagnostics::{self, Code};

/// Exit codes shared by every subcommand.
const EXIT_ERRORS: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "flowc",
    version,
    about = "Compile .flow integrations into standalone service binaries",
    long_about = "flowc checks a .flow file (every mistake reported before anything runs) \
                  and compiles it into one standalone binary that runs the integration as a service.",
    after_help = "Typical use:\n  flowc check orders.flow\n  flowc build orders.flow -o bin/\n  ./bin/orders serve --addr 127.0.0.1:8080\n\nDocs: docs/language.md, docs/runtime.md, docs/diagnostics.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check .flow files and report every error and warning.
    ///
    /// Exit code: 0 no errors (warnings allowed), 1 errors, 2 usage or I/O error.
    Check {
        /// The .flow files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `human` (rendered, to stderr) or `json` (one object per line, to stdout).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Check and compile a .flow file into a standalone service binary.
    Build {
        /// The .flow file.
        file: PathBuf,
        /// Directory to put the binary in (default: the current directory).
        #[arg(short, long, default_value = ".")]
        out_dir: PathBuf,
        /// Build without optimisations (faster to compile, slower to run).
        #[arg(long)]
        debug: bool,
        /// Show cargo's output.
        #[arg(short, long)]
        verbose: bool,
        /// Also compile these optional clients, comma-separated, beyond the
        /// ones the integration's code shows it needs: `sftp`, `email`,
        /// `mysql`, a broker, `otel` (OTLP trace export, never derived
        /// from the code) or `postgres` (needed for `--store postgres://`,
        /// the shared store of replicas) (docs/tools.md).
        #[arg(long, value_name = "FEATURES", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(flowc::codegen::RUNTIME_FEATURES))]
        with: Vec<String>,
    },
    /// Build a .flow file, then serve it in the foreground (arguments after
    /// `--` go to the binary, e.g. `flowc run x.flow -- --addr 127.0.0.1:9000`).
    Run {
        /// The .flow file.
        file: PathBuf,
        /// Build without optimisations.
        #[arg(long)]
        debug: bool,
        /// Also compile these optional clients (see `flowc build --with`).
        #[arg(long, value_name = "FEATURES", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(flowc::codegen::RUNTIME_FEATURES))]
        with: Vec<String>,
        /// Arguments for the generated binary (default: `serve`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the `test` blocks of .flow files against the generated code.
    ///
    /// Each file is checked and built (debug), then its tests run: HTTP
    /// answered by the tests' mocks in-process, files in a temporary folder,
    /// an in-memory store. Exit code: 0 all passed (a file without tests
    /// passes), 1 a test failed or a file did not check or build, 2 usage or
    /// I/O error.
    Test {
        /// The .flow files whose tests to run.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only the tests whose name contains this.
        #[arg(long, value_name = "NAME")]
        filter: Option<String>,
    },
    /// Print the Rust code generated for a .flow file.
    Emit {
        /// The .flow file.
        file: PathBuf,
    },
    /// Format .flow files in place in the one canonical layout.
    ///
    /// Comments are kept; a file with syntax errors is left untouched.
    /// Exit code: 0 formatted, 1 syntax errors (or, with --check, a file
    /// that is not formatted), 2 I/O error.
    Fmt {
        /// The .flow files to format.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: list the files that are not formatted, with a
        /// line diff, and exit 1 if there are any.
        #[arg(long)]
        check: bool,
    },
    /// Print a graph of the flows: triggers, branches, loops, steps,
    /// dispatches and ends.
    ///
    /// Mermaid output renders on GitHub inside a ```mermaid block; DOT is
    /// for Graphviz (`flowc graph x.flow --format dot | dot -Tsvg > x.svg`);
    /// SVG is flowc's own drawing, the one a binary's executions page shows.
    Graph {
        /// The .flow file.
        file: PathBuf,
        /// `mermaid`, `dot` or `svg`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Start a new integration: a folder NAME/ with NAME.flow (a small working
    /// integration of the pattern, with tests) and a README.
    ///
    /// Exit code: 0 created, 2 bad name, existing non-empty folder or I/O error.
    New {
        /// The integration's name, a flow identifier such as `order_sync`;
        /// also the folder's name.
        name: String,
        /// What the integration does.
        #[arg(long, value_enum, default_value_t = NewPattern::Webhook)]
        pattern: NewPattern,
    },
    /// Run the Language Server (LSP over stdio) for editors: diagnostics,
    /// hover, go to definition and completion.
    Lsp,
    /// Print the long explanation of a diagnostic code, e.g. `flowc explain E0200`.
    Explain {
        /// A code such as E0200 or W0001.
        code: String,
    },
}

/// The patterns of `flowc new`.
#[derive(Clone, Copy, ValueEnum)]
enum NewPattern {
    /// Events pushed to a webhook, each fanned out into API calls.
    Webhook,
    /// A scheduled import from an API without webhooks, with a cursor.
    Schedule,
    /// A synchronous lookup answered from a backend.
    Sync,
    /// CSV files dropped into a folder, one API call per row.
    Files,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
    /// An SVG drawing laid out by flowc (what the executions page shows).
    Svg,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, format } => check(&files, format),
        Command::Explain { code } => explain(&code),
        Command::Lsp => ExitCode::from(flowc::lsp::run()),
        Command::Fmt { files, check } => {
            ExitCode::from(flowc::fmt::run(&files, check, use_color()))
        }
        Command::Graph { file, format } => graph(&file, format),
        Command::New { name, pattern } => new(&name, pattern),
        Command::Emit { file } => match compile(&file) {
            Ok((_, code)) => {
                write_stdout(&code);
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Build {
            file,
            out_dir,
            debug,
            verbose,
            with,
        } => match build(&file, !debug, verbose, &with) {
            Ok((name, binary)) => install(&binary, &out_dir, &name),
            Err(code) => code,
        },
        Command::Test { files, filter } => test(&files, filter.as_deref()),
        Command::Run {
            file,
            debug,
            with,
            args,
        } => match build(&file, !debug, false, &with) {
            Ok((_, binary)) => run_binary(&binary, &args),
            Err(code) => code,
        },
    }
}

fn use_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn check(files: &[PathBuf], format: Format) -> ExitCode {
    let mut any_errors = false;
    let mut io_error = false;
    for path in files {
        let name = path.display().to_string();
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                io_error = true;
                continue;
            }
        };
        let (tree, checked) = parse_and_check_in(&source, path.parent());
        any_errors |= checked.has_errors();
        match format {
            Format::Json => {
                for d in &checked.diagnostics {
                    write_stdout(&format!("{}\n", diagnostics::to_json(&name, &source, d)));
                }
            }
            Format::Human => {
                eprint!(
                    "{}",
                    diagnostics::render(&name, &source, &checked.diagnostics, use_color())
                );
                let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
                let warnings = checked.diagnostics.len() - errors;
                if errors > 0 {
                    eprintln!("{name}: {errors} error(s), {warnings} warning(s)");
                } else if warnings > 0 {
                    eprintln!("{name}: ok, {warnings} warning(s)");
                }
            }
        }
        // The process ends after the last file: each file's tree and
        // checked program are left to the OS instead of being freed node
        // by node (5% of a large check's instructions went to those drops).
        std::mem::forget((tree, checked));
    }
    if io_error {
        ExitCode::from(EXIT_USAGE)
    } else if any_errors {
        ExitCode::from(EXIT_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(code: &str) -> ExitCode {
    let Some(code) = Code::parse(code) else {
        eprintln!("error: unknown diagnostic code `{code}`; codes look like E0200 or W0001 (see docs/diagnostics.md)");
        return ExitCode::from(EXIT_USAGE);
    };
    match code.explanation() {
        Some(text) => {
            write_stdout(&format!("{text}\n"));
            ExitCode::SUCCESS
        }
        None => {
            write_stdout(&format!("{}: {}\n", code.as_str(), code.title()));
            ExitCode::SUCCESS
        }
    }
}

fn new(name: &str, pattern: NewPattern) -> ExitCode {
    use flowc::new::Pattern;
    let pattern = match pattern {
        NewPattern::Webhook => Pattern::Webhook,
        NewPattern::Schedule => Pattern::Schedule,
        NewPattern::Sync => Pattern::Sync,
        NewPattern::Files => Pattern::Files,
    };
    match flowc::new::create(Path::new("."), name, pattern) {
        Ok(paths) => {
            for path in &paths {
                eprintln!("     Created {}", path.display());
            }
            eprintln!(
                "Next: cd {name} && flowc check {name}.flow (README.md says how to test, build and run it)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn graph(path: &Path, format: GraphFormat) -> ExitCode {
    let name = path.display().to_string();
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match flowc::syntax::parse_file(&source) {
        Ok(file) => {
            let format = match format {
                GraphFormat::Mermaid => flowc::graph::Format::Mermaid,
                GraphFormat::Dot => flowc::graph::Format::Dot,
                GraphFormat::Svg => flowc::graph::Format::Svg,
            };
            write_stdout(&flowc::graph::render(&file, &source, format));
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprint!(
                "{}",
                diagnostics::render(&name, &source, &diags, use_color())
            );
            ExitCode::from(EXIT_ERRORS)
        }
    }
}

/// Checks a file and generates its code: `(integration name, main.rs)`.
/// Diagnostics are printed; the error is the exit code to use.
fn compile(path: &Path) -> Result<(String, String), ExitCode> {
    compile_reporting(path, &mut |_| {}).map(|(name, generated)| (name, generated.main_rs))
}

/// [`compile`], calling `generating` with the integration's name once the
/// file has checked, before code generation; also returns the drawing of
/// the flows and the runtime
/// features the integration needs.
fn compile_reporting(
    path: &Path,
    generating: &mut dyn FnMut(&str),
) -> Result<(String, Generated), ExitCode> {
    let name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read {name}: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let file = match flowc::syntax::parse_file(&source) {
        Ok(f) => f,
        Err(diags) => {
            eprint!(
                "{}",
                diagnostics::render(&name, &source, &diags, use_color())
            );
            return Err(ExitCode::from(EXIT_ERRORS));
        }
    };
    let checked = flowc::check::check_in(&file, path.parent());
    if !checked.diagnostics.is_empty() {
        eprint!(
            "{}",
            diagnostics::render(&name, &source, &checked.diagnostics, use_color())
        );
    }
    if checked.has_errors() {
        return Err(ExitCode::from(EXIT_ERRORS));
    }
    let unsupported = flowc::codegen::unsupported(&file);
    if !unsupported.is_empty() {
        for (_, message) in &unsupported {
            eprintln!("error: {message}");
        }
        return Err(ExitCode::from(EXIT_ERRORS));
    }
    generating(&file.integration.name);
    let generated = Generated {
        main_rs: flowc::codegen::generate(&file, &checked.program, &source),
        graph_svg: flowc::graph::render(&file, &source, flowc::graph::Format::Svg),
        features: flowc::codegen::runtime_features(&file),
    };
    Ok((file.integration.name.clone(), generated))
}

/// What [`compile_reporting`] generated for one integration.
struct Generated {
    main_rs: String,
    graph_svg: String,
    features: Vec<&'static str>,
}

/// `12.3s`, or `2m 05s` from a minute on.
fn elapsed(started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        // Whole seconds: the cast truncates a positive value below 2^53.
        let whole = secs as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

/// Checks, generates and compiles, with one line per stage on stderr and
/// the time since the start; cargo's own output only with `verbose` or
/// when it fails.
/// Builds `path`; returns the integration's name and the built binary.
fn build(
    path: &Path,
    release: bool,
    verbose: bool,
    with: &[String],
) -> Result<(String, PathBuf), ExitCode> {
    use flowc::build::Progress;
    let started = Instant::now();
    eprintln!("    Checking {} [{}]", path.display(), elapsed(started));
    let (name, generated) = compile_reporting(path, &mut |name| {
        eprintln!("  Generating {name} [{}]", elapsed(started));
    })?;
    let mut opts = BuildOptions::from_env(release, verbose);
    let features: std::collections::BTreeSet<String> = generated
        .features
        .iter()
        .map(|f| f.to_string())
        .chain(with.iter().cloned())
        .collect();
    opts.features = features.into_iter().collect();
    let mut report = |stage: Progress| match stage {
        Progress::CompilingRuntime { first_time: true } => eprintln!(
            "   Compiling the runtime: first build with this flowc, a few minutes (cache: {}) [{}]",
            opts.cache_dir.display(),
            elapsed(started)
        ),
        Progress::CompilingRuntime { first_time: false } => {
            eprintln!("   Compiling the runtime [{}]", elapsed(started));
        }
        Progress::Compiling => eprintln!("   Compiling {name} [{}]", elapsed(started)),
    };
    let crate_name = flowc::build::crate_name(&name, path);
    let sources = flowc::build::Sources {
        main_rs: &generated.main_rs,
        graph_svg: &generated.graph_svg,
    };
    match flowc::build::build_with_progress(&crate_name, &sources, &opts, &mut report) {
        Ok(binary) => {
            let profile = if release { "release" } else { "debug" };
            eprintln!("    Finished {name} ({profile}) in {}", elapsed(started));
            Ok((name, binary))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_ERRORS))
        }
    }
}

/// `flowc test`: checks and builds each file that has `test` blocks and
/// runs its binary's hidden `test` command; the worst exit code wins.
fn test(files: &[PathBuf], filter: Option<&str>) -> ExitCode {
    let mut worst = 0u8;
    for path in files {
        let name = path.display().to_string();
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                worst = worst.max(EXIT_USAGE);
                continue;
            }
        };
        // A file that does not parse is reported by the build below.
        let has_tests = flowc::syntax::parse_file(&source).map_or(true, |f| {
            f.items
                .iter()
                .any(|i| matches!(i, flowc::syntax::ast::Item::Test(_)))
        });
        if !has_tests {
            eprintln!("{name}: no test blocks, nothing to run");
            continue;
        }
        let binary = match build(path, false, false, &[]) {
            Ok((_, binary)) => binary,
            Err(_) => {
                worst = worst.max(EXIT_ERRORS);
                continue;
            }
        };
        let mut args = vec!["test".to_string()];
        if let Some(f) = filter {
            args.push("--filter".into());
            args.push(f.to_string());
        }
        // The binary's exit code: 0 passed, 1 a test failed.
        let code = match std::process::Command::new(&binary).args(&args).status() {
            Ok(status) if status.success() => 0,
            Ok(_) => EXIT_ERRORS,
            Err(e) => {
                eprintln!("error: cannot start {}: {e}", binary.display());
                EXIT_USAGE
            }
        };
        worst = worst.max(code);
    }
    ExitCode::from(worst)
}

/// Copies the built binary to `out_dir`, named after the integration.
fn install(binary: &Path, out_dir: &Path, name: &str) -> ExitCode {
    let file_name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dest = out_dir.join(&file_name);
    let copied = std::fs::create_dir_all(out_dir).and_then(|()| {
        // Copy to a temporary name and rename, so a running binary at
        // `dest` is replaced, not overwritten in place. The name is this
        // process's own: two builds installing at once don't mix copies.
        let tmp = out_dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        std::fs::copy(binary, &tmp)?;
        std::fs::rename(&tmp, &dest)
    });
    match copied {
        Ok(()) => {
            eprintln!("      Binary {}", dest.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", dest.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_binary(binary: &Path, args: &[String]) -> ExitCode {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args);
    match cmd.status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => ExitCode::from(EXIT_ERRORS),
        },
        Err(e) => {
            eprintln!("error: cannot start {}: {e}", binary.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Writes to stdout, treating a closed pipe (`flowc explain E0404 | head`)
/// as the reader having had enough rather than as an error.
fn write_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
