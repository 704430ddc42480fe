//! The `flowc` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use flowc::build::BuildOptions;
use flowc::check::check_source;
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
    },
    /// Build a .flow file, then serve it in the foreground (arguments after
    /// `--` go to the binary, e.g. `flowc run x.flow -- --addr 127.0.0.1:9000`).
    Run {
        /// The .flow file.
        file: PathBuf,
        /// Build without optimisations.
        #[arg(long)]
        debug: bool,
        /// Arguments for the generated binary (default: `serve`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print the Rust code generated for a .flow file.
    Emit {
        /// The .flow file.
        file: PathBuf,
    },
    /// Print the long explanation of a diagnostic code, e.g. `flowc explain E0200`.
    Explain {
        /// A code such as E0200 or W0001.
        code: String,
    },
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
        Command::Emit { file } => match compile(&file) {
            Ok((_, code)) => {
                print!("{code}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Build {
            file,
            out_dir,
            debug,
            verbose,
        } => match build(&file, !debug, verbose) {
            Ok(binary) => install(&binary, &out_dir),
            Err(code) => code,
        },
        Command::Run { file, debug, args } => match build(&file, !debug, false) {
            Ok(binary) => run_binary(&binary, &args),
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
        let checked = check_source(&source);
        any_errors |= checked.has_errors();
        match format {
            Format::Json => {
                for d in &checked.diagnostics {
                    println!("{}", diagnostics::to_json(&name, &source, d));
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
            println!("{text}");
            ExitCode::SUCCESS
        }
        None => {
            println!("{}: {}", code.as_str(), code.title());
            ExitCode::SUCCESS
        }
    }
}

/// Checks a file and generates its code: `(integration name, main.rs)`.
/// Diagnostics are printed; the error is the exit code to use.
fn compile(path: &Path) -> Result<(String, String), ExitCode> {
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
    let checked = flowc::check::check(&file);
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
    let code = flowc::codegen::generate(&file, &checked.program, &source);
    Ok((file.integration.name.clone(), code))
}

fn build(path: &Path, release: bool, verbose: bool) -> Result<PathBuf, ExitCode> {
    let started = Instant::now();
    let (name, code) = compile(path)?;
    let opts = BuildOptions::from_env(release, verbose);
    eprintln!("   Compiling {name} (cache: {})", opts.cache_dir.display());
    match flowc::build::build(&name, &code, &opts) {
        Ok(binary) => {
            eprintln!(
                "    Finished {name} in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            Ok(binary)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_ERRORS))
        }
    }
}

fn install(binary: &Path, out_dir: &Path) -> ExitCode {
    let Some(file_name) = binary.file_name() else {
        return ExitCode::from(EXIT_USAGE);
    };
    let dest = out_dir.join(file_name);
    let copied = std::fs::create_dir_all(out_dir).and_then(|()| {
        // Copy to a temporary name and rename, so a running binary at
        // `dest` is replaced, not overwritten in place.
        let tmp = out_dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
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
