//! Which commands the Redis user may run on the relay's keys: each probe runs one command on
//! a key of the relay's key space that does not exist (`<stream>:acl-probe`), so that it
//! changes nothing (`HSET`'s field is removed by the `HDEL` probe after it), and only a
//! `NOPERM` answer (an ACL refusal) counts against it.

use super::{Store, StoreError};

/// A probe: the command as `check` names it, and its arguments after the probe key.
type Probe = (&'static str, &'static [&'static str]);

/// What the server runs.
pub const SERVER: &[Probe] = &[
    ("XADD", &["NOMKSTREAM", "*", "f", "v"]),
    ("XLEN", &[]),
    ("XINFO GROUPS", &[]),
    ("XPENDING", &["g"]),
    ("XTRIM", &["MINID", "=", "0"]),
    ("EVAL", &[]), // the exact backlog cap
];

/// What the client runs (dead letters and the DLQ tools included).
pub const CLIENT: &[Probe] = &[
    ("XGROUP CREATE", &["g", "0"]),
    ("XREADGROUP", &[]),
    ("XACK", &["g", "0-1"]),
    ("XAUTOCLAIM", &["g", "c", "0", "0"]),
    ("XCLAIM", &["g", "c", "0", "0-1", "JUSTID"]),
    ("XPENDING", &["g", "-", "+", "1"]),
    ("XRANGE", &["-", "+", "COUNT", "1"]),
    ("XREVRANGE", &["+", "-", "COUNT", "1"]),
    ("XDEL", &["0-1"]),
    ("HMGET", &["f"]),
    ("HSET", &["f", "v"]), // the next probe removes it again
    ("HDEL", &["f"]),
    ("HSCAN", &["0"]),
    ("EVAL", &[]), // acknowledgements, dead letters, cleanups
];

/// Wanted by the client but not needed: `PUBLISH` on `<stream>:activity` (a channel, so the
/// user needs `&<prefix>*` besides `~<prefix>*`), which `tail` follows.
pub const CLIENT_ACTIVITY: &[Probe] = &[("PUBLISH", &["m"])];

impl Store {
    /// Whether Redis takes a write now: `XADD … NOMKSTREAM` on the probe key writes nothing,
    /// but a Redis full to its `maxmemory` (`OOM`) or unable to save (`MISCONF`) refuses it
    /// before looking, as it refuses the server's webhooks.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(format!("{}:acl-probe", self.keys.stream))
            .arg(&["NOMKSTREAM", "*", "f", "v"]);
        self.run::<redis::Value>(&cmd).await.map(drop)
    }

    /// The probes the user may not run (`NOPERM`), by name.
    pub async fn denied(&self, probes: &[Probe]) -> Result<Vec<&'static str>, StoreError> {
        let key = format!("{}:acl-probe", self.keys.stream);
        let mut denied = Vec::new();
        for (name, args) in probes {
            let mut words = name.split(' ');
            let mut cmd = redis::cmd(words.next().expect("a command name"));
            for w in words {
                cmd.arg(w);
            }
            match *name {
                "XREADGROUP" => {
                    cmd.arg("GROUP g c COUNT 1 STREAMS".split(' ').collect::<Vec<_>>())
                        .arg(&key)
                        .arg(">");
                }
                "EVAL" => {
                    cmd.arg("return 1").arg(0);
                }
                _ => {
                    cmd.arg(&key).arg(*args);
                }
            }
            match self.run::<redis::Value>(&cmd).await {
                Err(e) if e.code() == Some("NOPERM") => denied.push(*name),
                Err(e) if !e.is_refusal() => return Err(e),
                _ => {}
            }
        }
        Ok(denied)
    }
}
