//! Text that must never be printed: tokens and passwords read from configuration or a peer.
//! `Debug` and `Display` show that a value is there, never the value; the only way to the
//! text is [`Redacted::expose`], at the one place that sends it.

/// A secret string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redacted(..)")
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_value_never_prints() {
        let token = Redacted::new("hvs.s3cr3t-token");
        for shown in [
            format!("{token:?}"),
            format!("{token}"),
            format!("{:?}", Some(&token)),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        assert_eq!(token.expose(), "hvs.s3cr3t-token");
    }
}
