//! The per-webhook attempt counts kept in Redis while a webhook is pending
//! (`<stream>:attempts:<group>`), so that a restart continues where it stopped; and their
//! cleanup, so the hash never grows without bound.

use super::{Store, StoreError, StreamId};

/// One page of attempt-count cleanup: every field of `KEYS[2]` whose id is no longer pending
/// in the group (acknowledged by another client, claimed and finished elsewhere, the stream
/// or group deleted) is removed; with `KEYS[3]`, a still-pending one is moved there instead
/// (the per-stream hash of earlier versions). Returns `{next cursor, removed}`.
const CLEANUP_SCRIPT: &str = r"
local r = redis.call('HSCAN', KEYS[2], ARGV[2], 'COUNT', ARGV[3])
local removed = 0
local fields = r[2]
for i = 1, #fields, 2 do
  local id = fields[i]
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local pending = ok and #p > 0
  if pending and KEYS[3] then
    redis.call('HSETNX', KEYS[3], id, fields[i + 1])
  end
  if not pending or KEYS[3] then
    redis.call('HDEL', KEYS[2], id)
    if not pending then removed = removed + 1 end
  end
end
return {r[1], removed}
";

/// The counts kept per pending webhook, so that a restart continues where it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Attempts sent so far (`X-Relay-Attempt` of the last one).
    pub tries: u32,
    /// Attempts counted toward `RELAY_MAX_ATTEMPTS`.
    pub counted: u32,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// Unix ms before which the next attempt is not due (0: now).
    pub due_ms: u64,
}

impl Store {
    /// The hash of `Stored` counts per pending webhook id of this group.
    pub(super) fn attempts_key(&self) -> String {
        format!("{}:attempts:{}", self.keys.stream, self.group_name())
    }

    /// The stored counts of each id (zeros when none).
    pub async fn load_attempts(&self, ids: &[StreamId]) -> Result<Vec<Stored>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.attempts_key());
        for id in ids {
            cmd.arg(id.to_string());
        }
        let raw: Vec<Option<String>> = self.run(&cmd).await?;
        Ok(raw.iter().map(|v| Stored::decode(v.as_deref())).collect())
    }

    /// Records the counts of several webhooks in one `HSET`.
    pub async fn save_attempts(&self, counts: &[(StreamId, Stored)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.attempts_key());
        for (id, stored) in counts {
            cmd.arg(id.to_string()).arg(stored.encode());
        }
        self.run::<()>(&cmd).await
    }

    /// One page of the attempt-count cleanup (see `CLEANUP_SCRIPT`); also moves the counts
    /// of the per-stream hash older versions kept. Returns the next cursor (`0` when done)
    /// and how many orphaned counts were removed.
    pub async fn cleanup_attempts(
        &self,
        legacy: bool,
        cursor: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLEANUP_SCRIPT);
        if legacy {
            cmd.arg(3)
                .arg(&self.keys.stream)
                .arg(format!("{}:attempts", self.keys.stream))
                .arg(self.attempts_key());
        } else {
            cmd.arg(2).arg(&self.keys.stream).arg(self.attempts_key());
        }
        cmd.arg(self.group_name()).arg(cursor).arg(200);
        let (next, removed): (String, u64) = self.run(&cmd).await?;
        Ok((next.parse().unwrap_or(0), removed))
    }
}

impl Stored {
    /// `"tries counted failures due_ms"`; older two-field values still parse.
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.tries, self.counted, self.failures, self.due_ms
        )
    }

    fn decode(v: Option<&str>) -> Stored {
        let mut parts = v.unwrap_or("").split_whitespace();
        let mut next = || {
            parts
                .next()
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Stored {
            tries: small(next()),
            counted: small(next()),
            failures: small(next()),
            due_ms: next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_counts_round_trip_and_old_values_parse() {
        let s = Stored {
            tries: 5,
            counted: 2,
            failures: 3,
            due_ms: 1_700_000_000_123,
        };
        assert_eq!(Stored::decode(Some(&s.encode())), s);
        assert_eq!(
            Stored::decode(Some("3 2")),
            Stored {
                tries: 3,
                counted: 2,
                ..Default::default()
            }
        );
        assert_eq!(Stored::decode(None), Stored::default());
        assert_eq!(Stored::decode(Some("x y")), Stored::default());
    }
}
