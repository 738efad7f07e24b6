//! What a command found, as a list of checks with a verdict each, printed for a person
//! (aligned, coloured only on a terminal that wants colour) or as JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable here (said why in the detail); does not fail the verdict.
    Skip,
    /// Could not be decided with what the user trusts (said what to pin in the detail): the
    /// verdict is "could not tell", exit status 2, never VERIFIED.
    Undecided,
}

/// One check: what was checked, how it came out, and the evidence or the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Pass, detail)
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Fail, detail)
    }

    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Skip, detail)
    }

    pub fn undecided(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Outcome::Undecided, detail)
    }

    fn new(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            outcome,
            detail: detail.into(),
        }
    }
}

/// The checks made on one subject (a run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `TaskRun ns/name`.
    pub subject: String,
    /// True when no check failed and every one was decided.
    pub verified: bool,
    /// True when no check failed but one could not be decided ("could not tell").
    pub undecided: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(subject: String, checks: Vec<Check>) -> Self {
        let failed = checks.iter().any(|c| c.outcome == Outcome::Fail);
        let undecided = !failed && checks.iter().any(|c| c.outcome == Outcome::Undecided);
        Self {
            subject,
            verified: !failed && !undecided,
            undecided,
            checks,
        }
    }

    /// The report for a person: one line per check, then the verdict.
    pub fn text(&self, colour: bool) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = format!("{}\n", self.subject);
        for check in &self.checks {
            let (word, code) = match check.outcome {
                Outcome::Pass => ("ok  ", "32"),
                Outcome::Fail => ("FAIL", "31"),
                Outcome::Skip => ("skip", "2"),
                Outcome::Undecided => ("????", "33"),
            };
            let _ = writeln!(
                out,
                "  {} {:<width$}  {}",
                paint(word, code, colour),
                check.name,
                check.detail
            );
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count();
        let verdict = if self.undecided {
            paint(
                "COULD NOT TELL (pin what the checks marked ???? name, then verify again)",
                "33",
                colour,
            )
        } else if failed == 0 {
            paint("VERIFIED", "32", colour)
        } else {
            paint(
                &format!(
                    "NOT VERIFIED ({failed} of {} checks failed)",
                    self.checks.len()
                ),
                "31",
                colour,
            )
        };
        let _ = writeln!(out, "{verdict}");
        out
    }
}

/// `text` in ANSI colour `code` when `colour` is on.
pub fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_check_fails_the_verdict_and_skips_do_not() {
        let skipped = Report::new(
            "TaskRun a/b".to_owned(),
            vec![Check::pass("signed", "yes"), Check::skip("images", "none")],
        );
        assert!(skipped.verified);
        assert!(skipped.text(false).ends_with("VERIFIED\n"));
        let failed = Report::new(
            "TaskRun a/b".to_owned(),
            vec![
                Check::pass("signed", "yes"),
                Check::fail("signature", "tampered"),
            ],
        );
        assert!(!failed.verified);
        let text = failed.text(false);
        assert!(text.contains("  FAIL signature  tampered\n"), "{text}");
        assert!(
            text.ends_with("NOT VERIFIED (1 of 2 checks failed)\n"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour when piped: {text}");
    }

    #[test]
    fn an_undecided_check_is_never_verified_and_a_failure_outranks_it() {
        let undecided = Report::new(
            "TaskRun a/b".to_owned(),
            vec![
                Check::pass("signed", "yes"),
                Check::undecided("transparency", "pin the log's key"),
            ],
        );
        assert!(!undecided.verified && undecided.undecided);
        let text = undecided.text(false);
        assert!(text.contains("COULD NOT TELL"), "{text}");
        assert!(!text.contains("VERIFIED"), "{text}");
        let failed = Report::new(
            "TaskRun a/b".to_owned(),
            vec![
                Check::undecided("transparency", "pin the log's key"),
                Check::fail("signature", "tampered"),
            ],
        );
        assert!(!failed.verified && !failed.undecided);
    }
}
