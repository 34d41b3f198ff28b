//! The `anarchy` binary as a user runs it: the demo converges and says so in
//! JSON, keygen prints a usable key, bad input fails with a message.

use std::process::Command;

fn anarchy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_anarchy")).args(args).output().expect("the binary runs")
}

#[test]
fn demo_with_four_peers_converges_and_prints_one_json_object() {
    let out = anarchy(&["demo", "--peers", "4", "--seconds", "2", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON object");
    assert_eq!(report["converged"], serde_json::Value::Bool(true), "{report}");
    assert_eq!(report["peers"], 4);
    assert!(report["updates_written"].as_u64().unwrap() > 0, "{report}");
    assert!(report["updates_applied"].as_u64().unwrap() > 0, "{report}");
    for q in ["p50", "p99", "max"] {
        assert!(report["propagation_ms"][q].is_number(), "{report}");
    }
}

#[test]
fn keygen_prints_a_secret_key_and_its_peer_id() {
    let out = anarchy(&["keygen"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id_line = stdout.lines().find(|l| l.starts_with("# peer id: ")).expect("a peer id line");
    assert_eq!(id_line.trim_start_matches("# peer id: ").len(), 32, "{stdout}");
    let key_line = stdout.lines().find(|l| !l.starts_with('#')).expect("a key line");
    assert_eq!(key_line.len(), 64, "{stdout}");
    assert!(key_line.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");

    let again = anarchy(&["keygen"]);
    assert_ne!(again.stdout, out.stdout, "every key is fresh");
}

#[test]
fn a_bad_flag_fails_with_a_message() {
    let out = anarchy(&["demo", "--no-such-flag"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");

    let out = anarchy(&["demo", "--peers", "1"]);
    assert!(!out.status.success(), "a demo needs two players");

    let out = anarchy(&["node", "--bind", "127.0.0.1:0", "--key", "not-a-key"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-key"));
}

#[test]
fn a_demo_with_a_passphrase_converges_and_a_malformed_secret_is_refused() {
    let out = anarchy(&["demo", "--peers", "3", "--seconds", "1", "--json", "--passphrase", "our game"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["converged"], serde_json::Value::Bool(true), "{report}");

    let out = anarchy(&["node", "--bind", "127.0.0.1:0", "--secret", "abc"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex digits"));

    let out = anarchy(&["demo", "--secret", &"ab".repeat(32), "--passphrase", "x"]);
    assert!(!out.status.success(), "a secret and a passphrase together are refused");
}
