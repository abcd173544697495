//! Child processes the tests wait on by what they say: a thread reads a child's output line
//! by line, copies it to `$CRM_TEST_LOG_DIR/<name>-….log` when that is set, and passes each
//! line on; the test waits for the line it needs ("Ready to accept connections", "listening
//! on 127.0.0.1:…") rather than polling a port it picked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

static LOGS: AtomicUsize = AtomicUsize::new(0);

/// The lines a child writes, as they come, and every line seen so far.
pub struct Lines {
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

/// Reads `from` on a thread of its own until it ends.
pub fn watch(from: impl Read + Send + 'static, name: &str) -> Lines {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut log = std::env::var_os("CRM_TEST_LOG_DIR").and_then(|dir| {
        let n = LOGS.fetch_add(1, Ordering::Relaxed);
        let file = format!("{name}-{}-{n}.log", std::process::id());
        std::fs::File::create(PathBuf::from(dir).join(file)).ok()
    });
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            let _ = tx.send(line); // the test may have stopped listening: keep draining
        }
    });
    Lines {
        rx,
        seen: Vec::new(),
    }
}

impl Lines {
    /// The first line (from now on) that `wanted` accepts, within `limit`; `None` if the
    /// child ended or the time passed first.
    pub async fn until(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let (rx, seen) = (&mut self.rx, &mut self.seen);
        let find = async {
            while let Some(line) = rx.recv().await {
                seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        };
        tokio::time::timeout(limit, find).await.ok().flatten()
    }

    /// Every line the child wrote, from its first until it closes its output (waiting up to
    /// `limit` for that), as one text.
    pub async fn rest(&mut self, limit: Duration) -> String {
        let _ = self.until(limit, |_| false).await;
        self.seen.join("\n")
    }

    /// The address of the relay's `listening on <addr> (<what>)` line.
    pub async fn listening(&mut self, what: &str) -> SocketAddr {
        let tag = format!("({what})");
        let line = self
            .until(Duration::from_secs(20), |l| {
                l.contains("listening on ") && l.ends_with(&tag)
            })
            .await
            .unwrap_or_else(|| panic!("the relay never logged its {what} address"));
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address after 'listening on'");
        addr.parse().expect("a socket address")
    }
}

/// Waits up to `limit` for `child` to exit; its exit code (`None`: still running, or
/// killed by a signal).
pub async fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let mut code = None;
    super::eventually(limit, || {
        let exited = child.try_wait().ok().flatten();
        code = exited.and_then(|s| s.code());
        std::future::ready(exited.is_some())
    })
    .await;
    code
}
