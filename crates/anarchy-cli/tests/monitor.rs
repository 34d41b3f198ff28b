//! `anarchy node --admin` and `anarchy monitor` as a user runs them: two
//! node processes join, the monitor fetches the first one's `/status` and
//! prints the dashboard; public admin binds are refused.
//! Every wait polls a condition against a generous deadline; no fixed sleeps.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: loaded CI machines stall.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often waits re-check their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn anarchy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anarchy")).args(args).output().expect("the binary runs")
}

/// A node process whose stderr is collected line by line; killed on drop.
struct Node {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(args: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_anarchy"))
            .arg("node")
            .args(args)
            .args(["--log", "info"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the node starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(strip_ansi(&line));
            }
        });
        Node { child, log }
    }

    /// The address logged after `key=` on the first line containing `marker`.
    fn logged_addr(&self, marker: &str, key: &str) -> String {
        let give_up = Instant::now() + DEADLINE;
        loop {
            let found = self.log.lock().unwrap().iter().find(|l| l.contains(marker)).and_then(|l| {
                let at = l.find(&format!("{key}="))? + key.len() + 1;
                Some(l[at..].split_whitespace().next()?.to_owned())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < give_up, "no {marker:?} line; log: {:?}", self.log.lock().unwrap());
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn monitor_once_shows_a_live_nodes_peers_and_shards() {
    let first = Node::start(&["--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--shard", "world"]);
    let admin = first.logged_addr("admin endpoint:", "admin");
    let udp = first.logged_addr("node started", "bound");
    let _second = Node::start(&["--bind", "127.0.0.1:0", "--join", &udp, "--shard", "lobby"]);

    let give_up = Instant::now() + DEADLINE;
    let text = loop {
        let out = anarchy(&["monitor", &admin, "--once", "--width", "160", "--height", "40"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && stdout.contains("members 2 alive") && stdout.contains("lobby") {
            break stdout;
        }
        assert!(
            Instant::now() < give_up,
            "the monitor never showed both nodes\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(POLL_INTERVAL);
    };
    for expected in
        ["anarchy monitor", admin.as_str(), "Peers [2]", "Shard map [2]", "world", "lobby", "alive", "q quit"]
    {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(text.contains(&udp), "the first node's own address is listed\n{text}");
    assert_eq!(text.lines().count(), 40, "one line per row\n{text}");
}

#[test]
fn node_refuses_a_public_admin_address_unless_asked() {
    let out = anarchy(&["node", "--bind", "127.0.0.1:0", "--admin", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("non-loopback"), "{stderr}");

    let out = anarchy(&["node", "--bind", "127.0.0.1:0", "--admin-public"]);
    assert!(!out.status.success(), "--admin-public needs --admin");
}

#[test]
fn bad_conditioner_specs_and_unreachable_monitors_fail_with_a_message() {
    let out = anarchy(&["node", "--bind", "127.0.0.1:0", "--conditioner", "latency=40"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("40ms"), "the error shows a valid example");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = anarchy(&["monitor", &addr, "--once"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}
