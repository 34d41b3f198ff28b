//! `anarchy keygen`: makes a new identity and prints or saves it, and reads
//! identities back for `anarchy node --key`. The key file format is one line
//! of 64 hex digits; lines starting with `#` are comments.

use std::path::PathBuf;
use std::process::ExitCode;

use anarchy::proto::identity::{hex, unhex};
use anarchy::Keypair;
use rand::RngCore;

/// Arguments of `anarchy keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Write the key to FILE (created with owner-only permissions) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `anarchy keygen`.
pub fn run(args: KeygenArgs) -> ExitCode {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let keypair = Keypair::from_secret(secret);
    let text = format!("# peer id: {}\n{}\n", keypair.peer_id(), hex(&secret));
    match args.out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match write_private(&path, &text) {
            Ok(()) => {
                println!("wrote secret key to {}", path.display());
                println!("peer id: {}", keypair.peer_id());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Creates `path` (failing if it exists, so no key is overwritten) readable by the owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// Parses `--key`: 64 hex digits, or the path of a file holding them.
pub fn load_keypair(arg: &str) -> Result<Keypair, String> {
    if let Some(keypair) = parse_secret(arg) {
        return Ok(keypair);
    }
    let text = std::fs::read_to_string(arg)
        .map_err(|e| format!("--key {arg:?} is neither 64 hex digits nor a readable key file: {e}"))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    parse_secret(line).ok_or_else(|| format!("key file {arg:?} does not hold a 64-hex-digit secret key"))
}

fn parse_secret(text: &str) -> Option<Keypair> {
    let bytes = unhex(text.trim())?;
    let secret: [u8; 32] = bytes.try_into().ok()?;
    Some(Keypair::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_from_hex_and_refuse_anything_else() {
        let kp = Keypair::from_seed(7);
        let parsed = load_keypair(&hex(&kp.secret())).expect("hex parses");
        assert_eq!(parsed.peer_id(), kp.peer_id());
        assert!(load_keypair("abc").is_err());
        assert!(load_keypair("/nonexistent/key/file").is_err());
    }
}
