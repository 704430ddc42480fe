//! `flowc new NAME [--pattern ...]`: a folder with a small working
//! integration of one pattern (`NAME.flow`, with doc comments and test
//! blocks) and a README saying how to check, test, build and run it.
//!
//! The templates are `.flow` files under `src/new/`, with `__NAME__` where
//! the integration's name goes; a test checks that each one, once named,
//! checks without a diagnostic and is already formatted.

use std::io;
use std::path::{Path, PathBuf};

/// The kinds of integration `flowc new` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Events pushed to a webhook, each fanned out into API calls.
    Webhook,
    /// A scheduled import from an API without webhooks, with a cursor.
    Schedule,
    /// A synchronous lookup answered from a backend.
    Sync,
    /// Files dropped into a folder, one API call per row.
    Files,
}

impl Pattern {
    pub const ALL: [Pattern; 4] = [
        Pattern::Webhook,
        Pattern::Schedule,
        Pattern::Sync,
        Pattern::Files,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Webhook => "webhook",
            Pattern::Schedule => "schedule",
            Pattern::Sync => "sync",
            Pattern::Files => "files",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Pattern::Webhook => include_str!("new/webhook.flow"),
            Pattern::Schedule => include_str!("new/schedule.flow"),
            Pattern::Sync => include_str!("new/sync.flow"),
            Pattern::Files => include_str!("new/files.flow"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error("`{name}` is not a valid integration name: {reason}")]
    BadName { name: String, reason: String },
    #[error("{} already exists and is not empty; choose another name or remove it", .0.display())]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Words that cannot name an integration besides the language's reserved
/// words ([`crate::syntax::RESERVED`]): the ambient names and Rust's
/// keywords (the name becomes the binary's crate name).
const ALSO_RESERVED: &[&str] = &[
    "config",
    "error",
    "env",
    "abstract",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "enum",
    "extern",
    "final",
    "fn",
    "gen",
    "impl",
    "loop",
    "macro",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "try",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "std",
    "core",
    "alloc",
    "proc_macro",
];

/// Checks that `name` can name an integration: `[a-z_][a-z0-9_]*`, not a
/// reserved word.
pub fn validate_name(name: &str) -> Result<(), NewError> {
    let bad = |reason: &str| {
        Err(NewError::BadName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return bad("it is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c == '_') => {
            return bad("it must start with a lowercase letter or `_` (like `order_sync`)")
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return bad("use lowercase letters, digits and `_` only (like `order_sync`)");
    }
    if name.chars().all(|c| c == '_') {
        return bad("it needs a letter");
    }
    if crate::syntax::RESERVED.contains(&name) || ALSO_RESERVED.contains(&name) {
        return bad("it is a reserved word");
    }
    Ok(())
}

/// The `.flow` file of a new integration.
pub fn flow_source(name: &str, pattern: Pattern) -> String {
    pattern.template().replace("__NAME__", name)
}

/// The README of a new integration.
pub fn readme(name: &str, pattern: Pattern) -> String {
    let (what, env, try_it) = match pattern {
        Pattern::Webhook => (
            "receives orders by webhook and sends each item on to an API, one call per item, \
             retried with backoff",
            "TARGET_URL=http://localhost:9000 TARGET_TOKEN=dev WEBHOOK_SECRET=dev-secret \\\n  \
             SOURCE_URL=http://localhost:9002 SOURCE_TOKEN=dev",
            "```sh\nbody='{\"id\":\"o-1\",\"items\":[{\"sku\":\"tea\",\"quantity\":2}]}'\n\
             sig=$(printf '%s' \"$body\" | openssl dgst -sha256 -hmac dev-secret | cut -d' ' -f2)\n\
             curl -i -X POST localhost:8080/orders -H 'content-type: application/json' \\\n  \
             -H \"X-Signature: $sig\" -d \"$body\"\n\
             # 202 {\"execution_id\":\"...\"}: stored, then sent on to $TARGET_URL/items\n\
             # (401 without a valid signature)\n```\n\n\
             On its first start a new version runs the deploy flow, which registers\n\
             `$PUBLIC_URL/orders` with `$SOURCE_URL/webhooks`; when the integration is\n\
             retired, `bin/__NAME__ undeploy` runs the remove flow, which deletes it.\n",
        ),
        Pattern::Schedule => (
            "polls an API without webhooks every five minutes and sends the changed records on, \
             keeping a cursor in durable state",
            "SOURCE_URL=http://localhost:9000 SINK_URL=http://localhost:9001",
            "The `poll` flow runs every five minutes while the binary serves. To run it once\n\
             now, in the foreground (the outcome is printed as JSON):\n\n\
             ```sh\nbin/__NAME__ run poll\n```\n",
        ),
        Pattern::Sync => (
            "answers customer lookups synchronously from a backend API",
            "BACKEND_URL=http://localhost:9000 BACKEND_KEY=dev API_TOKEN=dev-token",
            "```sh\ncurl -i localhost:8080/customers/c-1 -H 'Authorization: Bearer dev-token'\n\
             # 200 {\"id\":\"c-1\",\"name\":...} from $BACKEND_URL/customers/c-1, or 404\n```\n",
        ),
        Pattern::Files => (
            "imports CSV files dropped into `inbox/`, handing each row to a flow that sends it \
             to an API",
            "TARGET_URL=http://localhost:9000",
            "```sh\nmkdir -p inbox\nprintf 'sku,quantity\\ntea,2\\n' > inbox/stock.csv\n\
             # within a minute: one POST to $TARGET_URL/stock per row,\n\
             # and the file moves to inbox/processed/\n```\n",
        ),
    };
    let first_env = env.split('=').next().unwrap_or_default().to_string();
    let text = format!(
        "# __NAME__\n\n\
         A flowc integration, started with `flowc new --pattern {pattern}`:\n\
         it {what}.\n\n\
         `__NAME__.flow` is the whole integration: its config entries, types, flows and,\n\
         at the end, its `test` blocks. The doc comments (`///`) show up in the\n\
         binary's `--help` and in `flowc graph`.\n\n\
         ## Check\n\n\
         ```sh\nflowc check __NAME__.flow     # every mistake, before anything runs\n\
         flowc fmt __NAME__.flow       # the canonical layout\n\
         flowc graph __NAME__.flow     # a Mermaid picture of the flows\n```\n\n\
         ## Test\n\n\
         ```sh\nflowc test __NAME__.flow\n```\n\n\
         runs the `test` blocks against the generated code with HTTP mocked (no\n\
         network), files in a temporary folder and an in-memory store; it exits 0\n\
         when every test passes.\n\n\
         ## Build\n\n\
         ```sh\nflowc build __NAME__.flow -o bin/\n```\n\n\
         makes one standalone binary, `bin/__NAME__` (the first build on a machine also\n\
         compiles flowc's runtime, a few minutes; later builds take seconds).\n\n\
         ## Run\n\n\
         Each config entry is read from the environment variable of its name in\n\
         upper case (`{first_entry}` from `{first_env}`), else from `--config FILE.toml`,\n\
         else its default; `bin/__NAME__ check-config` names any that are missing.\n\n\
         ```sh\n{env} bin/__NAME__ serve --addr 127.0.0.1:8080\n```\n\n\
         or build and serve in one step with `flowc run __NAME__.flow`. Then:\n\n\
         {try_it}",
        pattern = pattern.as_str(),
        first_entry = first_env.to_lowercase(),
    );
    text.replace("__NAME__", name)
}

/// Creates `parent/NAME/` with `NAME.flow` and `README.md`; returns the
/// paths written. Refuses an existing non-empty folder.
pub fn create(parent: &Path, name: &str, pattern: Pattern) -> Result<Vec<PathBuf>, NewError> {
    validate_name(name)?;
    let dir = parent.join(name);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Io { path, source }
    };
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(NewError::NotEmpty(dir));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Err(e) if dir.exists() => {
            // A file of that name, or an unreadable folder.
            return Err(NewError::Io {
                path: dir,
                source: e,
            });
        }
        Err(e) => {
            return Err(NewError::Io {
                path: dir,
                source: e,
            })
        }
    }
    let flow = dir.join(format!("{name}.flow"));
    let readme_path = dir.join("README.md");
    std::fs::write(&flow, flow_source(name, pattern)).map_err(io_err(&flow))?;
    std::fs::write(&readme_path, readme(name, pattern)).map_err(io_err(&readme_path))?;
    Ok(vec![flow, readme_path])
}
