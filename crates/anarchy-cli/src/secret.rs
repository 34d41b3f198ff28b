//! The session-secret flags shared by `node` and `demo`: `--secret` (64 hex
//! digits), `--passphrase`, or the `ANARCHY_SECRET` environment variable.
//! Without any, the public open-session secret is used (anyone may join).

use anarchy::SessionSecret;

/// The environment variable read when neither flag is given (64 hex digits).
pub const SECRET_ENV: &str = "ANARCHY_SECRET";

/// Flags that choose the session secret.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// Session secret as 64 hex digits; only peers with the same secret can
    /// join or read the traffic. Default: $ANARCHY_SECRET, else the public
    /// open-session secret (anyone may join).
    #[arg(long, value_name = "HEX", conflicts_with = "passphrase")]
    secret: Option<String>,
    /// Session secret derived from a passphrase (BLAKE3 derive_key).
    #[arg(long, value_name = "TEXT")]
    passphrase: Option<String>,
}

impl SecretArgs {
    /// The secret the flags (or the environment) name.
    pub fn resolve(&self) -> Result<SessionSecret, String> {
        if let Some(p) = &self.passphrase {
            return Ok(SessionSecret::from_passphrase(p));
        }
        let (hex, source) = match &self.secret {
            Some(hex) => (hex.clone(), "--secret"),
            None => match std::env::var(SECRET_ENV) {
                Ok(hex) if !hex.trim().is_empty() => (hex, SECRET_ENV),
                _ => return Ok(SessionSecret::open()),
            },
        };
        SessionSecret::from_hex(&hex).ok_or_else(|| format!("{source} must be 64 hex digits (32 bytes)"))
    }
}
