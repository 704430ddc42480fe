//! A small mutation fuzzer on the stable toolchain (cargo-fuzz needs a
//! nightly compiler): inputs from a seed corpus are mutated (bytes flipped,
//! inserted, deleted, duplicated, spliced with other inputs, dictionary
//! tokens inserted) and run through a target inside `catch_unwind` for a
//! time budget.
//!
//! Without coverage instrumentation, "interesting" is what the target says
//! it is: it returns short *features* for each input (each diagnostic
//! code, an error's kind, ...). An input with a feature not seen before
//! joins the working corpus, so mutation moves on from it;
//! with `FLOW_FUZZ_SAVE=1` it is also written to the corpus folder kept in
//! the repository, so later runs start from what earlier ones found.
//!
//! - `FLOW_FUZZ_SECONDS`: the budget per target (default 2, for the short
//!   pass `cargo test` runs; give 600 for a real run, in release mode).
//! - `FLOW_FUZZ_SEED`: the PRNG seed (default: from the clock); printed,
//!   so a failure can be reproduced.
//!
//! A panic fails the test with the seed and the input, which is also
//! written under `target/fuzz-crashes/` to become a regression seed.

use std::collections::HashSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest input the mutations grow to.
const MAX_INPUT: usize = 64 * 1024;
/// Largest input saved to a corpus folder.
const MAX_SAVED: usize = 8 * 1024;

/// One fuzz target.
pub struct Fuzz<'a> {
    /// Names the target in messages and crash files.
    pub name: &'a str,
    /// The corpus kept in the repository: every file is a seed.
    pub corpus: PathBuf,
    /// Further seeds (e.g. the examples).
    pub seeds: Vec<Vec<u8>>,
    /// Tokens worth inserting whole (keywords, punctuation, numbers).
    pub dictionary: &'a [&'a [u8]],
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub executions: u64,
    pub features: usize,
    pub saved: usize,
}

impl Fuzz<'_> {
    /// Runs `target` on mutants until the budget is spent; panics (failing
    /// the test) when the target panics.
    pub fn run(self, target: impl FnMut(&[u8]) -> Vec<String>) -> Report {
        let budget = Duration::from_secs_f64(env_number("FLOW_FUZZ_SECONDS").unwrap_or(2.0));
        let seed = env_number("FLOW_FUZZ_SEED").map_or_else(clock_seed, |s| s as u64);
        let save = std::env::var("FLOW_FUZZ_SAVE").is_ok_and(|v| v == "1");
        self.run_with(budget, seed, save, target)
    }

    /// [`Fuzz::run`] with its settings given.
    pub fn run_with(
        self,
        budget: Duration,
        seed: u64,
        save: bool,
        mut target: impl FnMut(&[u8]) -> Vec<String>,
    ) -> Report {
        eprintln!(
            "fuzz {}: seed {seed}, {:.0} s (FLOW_FUZZ_SEED, FLOW_FUZZ_SECONDS)",
            self.name,
            budget.as_secs_f64()
        );
        let mut pool = self.seeds.clone();
        pool.extend(read_corpus(&self.corpus));
        if pool.is_empty() {
            pool.push(Vec::new());
        }
        let mut rng = Rng(seed | 1);
        let mut seen = HashSet::new();
        let mut report = Report {
            executions: 0,
            features: 0,
            saved: 0,
        };
        // Every seed once as it is, then mutants.
        let seeds = pool.clone();
        for input in &seeds {
            seen.extend(self.execute(&mut target, input, seed));
        }
        let started = Instant::now();
        while started.elapsed() < budget {
            let mut input = pool[rng.below(pool.len())].clone();
            for _ in 0..=rng.below(4) {
                self.mutate(&mut input, &pool, &mut rng);
            }
            let features = self.execute(&mut target, &input, seed);
            report.executions += 1;
            let mut new = false;
            for feature in features {
                new |= seen.insert(feature);
            }
            if new {
                // Kept small: a corpus of short inputs mutates faster.
                if save && input.len() <= MAX_SAVED {
                    report.saved += usize::from(save_input(&self.corpus, &input));
                }
                pool.push(input);
            }
        }
        report.features = seen.len();
        eprintln!("fuzz {}: {report:?}", self.name);
        report
    }

    fn execute(
        &self,
        target: &mut impl FnMut(&[u8]) -> Vec<String>,
        input: &[u8],
        seed: u64,
    ) -> Vec<String> {
        match panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
            Ok(feature) => feature,
            Err(cause) => {
                let why = cause
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let saved = save_crash(self.name, input);
                panic!(
                    "fuzz {}: the target panicked ({why}) on an input saved as {} (seed {seed}):\n{}",
                    self.name,
                    saved.display(),
                    String::from_utf8_lossy(&input[..input.len().min(2000)])
                );
            }
        }
    }

    fn mutate(&self, input: &mut Vec<u8>, pool: &[Vec<u8>], rng: &mut Rng) {
        let at = rng.below(input.len() + 1);
        match rng.below(8) {
            0 if !input.is_empty() => {
                let i = at.min(input.len() - 1);
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.bits() as u8),
            2 if at < input.len() => {
                let end = (at + 1 + rng.below(16)).min(input.len());
                input.drain(at..end);
            }
            3 if at < input.len() => {
                let end = (at + 1 + rng.below(32)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            4 => {
                // Splice: a piece of another input.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = (from + 1 + rng.below(64)).min(other.len());
                    input.splice(at..at, other[from..to].iter().copied());
                }
            }
            5 => input.truncate(at),
            _ if !self.dictionary.is_empty() => {
                let token = self.dictionary[rng.below(self.dictionary.len())];
                input.splice(at..at, token.iter().copied());
            }
            _ => input.insert(at, b"{}[]()\",:.\\0-9 \n"[rng.below(17)]),
        }
        input.truncate(MAX_INPUT);
    }
}

/// The files of a corpus folder, in name order.
fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| fs::read(p).ok()).collect()
}

/// Writes `input` into `dir` named by its hash; whether it was new.
fn save_input(dir: &Path, input: &[u8]) -> bool {
    let path = dir.join(format!("{:016x}", fnv1a(input)));
    if path.exists() || fs::create_dir_all(dir).is_err() {
        return false;
    }
    fs::write(path, input).is_ok()
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    let path = dir.join(format!("{target}-{:016x}", fnv1a(input)));
    let _ = fs::create_dir_all(&dir).and_then(|()| fs::write(&path, input));
    path
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// xorshift64*: small, deterministic for a seed (`Rng(seed)`, seed not 0).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_target_fails_with_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let result = panic::catch_unwind(|| {
            Fuzz {
                name: "selftest",
                corpus: dir.path().to_path_buf(),
                seeds: vec![b"abc".to_vec()],
                dictionary: &[b"BOOM"],
            }
            .run_with(Duration::from_secs(10), 7, false, |input| {
                assert!(!input.windows(4).any(|w| w == b"BOOM"), "found it");
                vec![input.len().min(3).to_string()]
            })
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("found it") && message.contains("BOOM"),
            "{message}"
        );
    }
}
