//! The registry of diagnostic codes.
//!
//! Codes are grouped by range and never reused once released:
//!
//! | range        | phase                                   |
//! |--------------|-----------------------------------------|
//! | E0001–E0099  | syntax (grammar, literals)              |
//! | E0100–E0199  | names (resolution, duplicates)          |
//! | E0200–E0299  | types                                   |
//! | E0300–E0399  | triggers and flow structure             |
//! | E0400–E0499  | statements (effects, respond, match)    |
//! | E0500–E0599  | config and secrets                      |
//! | E0600–E0699  | tests (section 9)                       |
//! | E0700–E0799  | connections (sections 12–13)            |
//! | W0001–W0099  | warnings                                |
//!
//! The long explanation of each code (`flowc explain`) is the code's section
//! of `docs/diagnostics.md`, embedded at build time, so the page and the
//! command can never disagree.

use super::Severity;

macro_rules! codes {
    ($($variant:ident = $code:literal, $title:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// A short title, as in the index of `docs/diagnostics.md`.
            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$variant => $title,)*
                }
            }
        }
    };
}

codes! {
    // ---- syntax
    Syntax = "E0001", "syntax error";
    InvalidEscape = "E0002", "invalid escape in a string";
    NumberOutOfRange = "E0003", "number out of range";
    KeywordAsName = "E0004", "keyword used as a name";
    BadDuration = "E0005", "invalid duration";
    MissingIntegration = "E0006", "missing or misplaced `integration` line";

    // ---- names
    UnknownName = "E0100", "unknown name";
    UnknownType = "E0101", "unknown type";
    UnknownField = "E0102", "unknown field";
    UnknownFunction = "E0103", "unknown stdlib function or module";
    UnknownFlow = "E0104", "unknown flow";
    UnknownConfig = "E0105", "unknown config entry";
    DuplicateFlow = "E0106", "duplicate flow name";
    DuplicateType = "E0107", "duplicate type name";
    DuplicateConfig = "E0108", "duplicate config entry";
    DuplicateField = "E0109", "duplicate field";
    DuplicateBinding = "E0110", "name already bound in this flow";
    DuplicateConfigBlock = "E0111", "more than one config block";
    UnknownArgument = "E0112", "unknown named argument";
    DuplicateArgument = "E0113", "argument given twice";
    MissingArgument = "E0114", "missing argument";
    TooManyArguments = "E0115", "too many positional arguments";
    UnknownMethod = "E0116", "unknown method";
    DuplicateTest = "E0117", "duplicate test name";
    RecursiveType = "E0118", "type alias refers to itself";

    // ---- types
    TypeMismatch = "E0200", "mismatched types";
    NotOptional = "E0201", "optional operation on a value that is not optional";
    OptionalAccess = "E0202", "field access on an optional value";
    BadOperands = "E0203", "operator cannot be applied to these types";
    BadCast = "E0204", "impossible `as` conversion";
    NotAList = "E0205", "not a list";
    NotCallable = "E0206", "not a function";
    MisplacedLambda = "E0207", "lambda outside a method argument";
    NoFields = "E0208", "value has no fields";
    BadTypeArguments = "E0209", "wrong type arguments";
    BadLiteral = "E0210", "literal does not fit the expected type";
    MissingField = "E0211", "record literal misses a field";
    EmptyCollection = "E0212", "type of an empty list or null cannot be inferred";

    // ---- triggers and flow structure
    MissingTrigger = "E0300", "flow without trigger";
    MultipleTriggers = "E0301", "flow with more than one trigger";
    DuplicateRoute = "E0302", "two flows on the same method and path";
    BadPath = "E0303", "malformed route path";
    BadCron = "E0304", "invalid cron expression";
    BadTimeZone = "E0305", "unknown time zone";
    UnknownTriggerOption = "E0306", "unknown trigger option";
    BadTriggerOption = "E0307", "invalid trigger option value";
    BadMethod = "E0308", "unknown HTTP method";
    NotDispatchTarget = "E0309", "dispatch to a flow without a dispatch trigger";
    NotEndpoint = "E0310", "`endpoint` of a flow without a webhook or sync trigger";
    BadBroker = "E0311", "unknown subscription broker";
    MissingTriggerOption = "E0312", "required trigger option missing";
    BadDurationValue = "E0313", "duration out of range";

    // ---- statements
    EffectOutsideStep = "E0400", "effectful call outside a step";
    RespondOutsideSync = "E0401", "`respond` outside a sync flow";
    MissingRespond = "E0402", "sync flow does not respond on every path";
    CodeAfterEnd = "E0403", "statement after the run has ended";
    NonExhaustiveMatch = "E0404", "match does not cover every case";
    StepNotCall = "E0405", "step is not a stdlib call";
    ErrorOutsideFailure = "E0406", "`error` outside `on failure`";
    UselessExpression = "E0407", "expression statement without effect";
    BadStepOption = "E0409", "invalid retry, backoff or timeout";
    SqlNotLiteral = "E0410", "SQL text that is not a string literal";
    SqlPlaceholders = "E0411", "SQL placeholders that do not match `args:`";

    // ---- config and secrets
    SecretLeak = "E0500", "secret value used where it could be printed";
    BadConfigDefault = "E0501", "config default does not fit its type";
    BadEnvName = "E0502", "invalid environment variable name";
    ConfigNotValue = "E0503", "`config` used without an entry name";
    MissingNeededConfig = "E0504", "stdlib function without the config entry it needs";

    // ---- tests
    TestRunMissing = "E0600", "test without `run`";
    BadMock = "E0601", "invalid mock";
    BadExpect = "E0602", "invalid expectation";
    BadInstance = "E0603", "invalid `instance` in a test";
    BadInstanceFile = "E0604", "instance config file that cannot be read";
    BadInstanceConfig = "E0605", "instance config value that does not fit the config block";

    // ---- connections
    UnknownConnection = "E0700", "unknown connection";
    DuplicateConnection = "E0701", "connection declared twice";
    BadConnectionOption = "E0702", "invalid connection option";
    ViaWithCredentials = "E0703", "`via:` together with `bearer:` or `basic:`";
    PagesOutsideFor = "E0704", "a streamed list outside a `for` loop";
    WrongConnectionKind = "E0705", "a connection of the wrong kind";

    // ---- warnings
    UnusedLet = "W0001", "unused `let` binding";
    UnusedConfig = "W0002", "unused config entry";
    UnreachableArm = "W0004", "unreachable match arm";
    UnusedType = "W0005", "unused type";
    PublicEndpoint = "W0010", "endpoint anyone can call";
    UnusedConnection = "W0011", "unused connection";
}

impl Code {
    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        let upper = s.trim().to_ascii_uppercase();
        Code::ALL.iter().copied().find(|c| c.as_str() == upper)
    }

    /// The code's section of `docs/diagnostics.md`: from its `## CODE`
    /// heading to the next `## ` heading.
    pub fn explanation(self) -> Option<&'static str> {
        let page = include_str!("../../docs/diagnostics.md");
        let heading = format!("## {}", self.as_str());
        let start = page.find(&heading)?;
        let rest = &page[start..];
        let end = rest[heading.len()..]
            .find("\n## ")
            .map_or(rest.len(), |i| i + heading.len() + 1);
        Some(rest[..end].trim_end())
    }
}
