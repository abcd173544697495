//! Server introspection for `check`: version and configuration.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Store, StoreError};

impl Store {
    /// What Redis writes to a new connection before reading anything, when that is an error
    /// line: at its `maxclients` it writes `-ERR max number of clients reached` and closes, so
    /// the redis crate, busy sending its first command, sees only a broken pipe or a reset.
    /// A healthy Redis writes nothing first (`None` after a short wait). `REDIS_URL` without
    /// TLS only.
    pub async fn greeting(&self) -> Option<String> {
        let (host, port) = self.locator.plain_node()?;
        let wait = Duration::from_millis(500);
        let mut tcp = tokio::time::timeout(wait, tokio::net::TcpStream::connect((host, port)))
            .await
            .ok()?
            .ok()?;
        let mut said = [0u8; 256];
        let n = tokio::time::timeout(wait, tcp.read(&mut said))
            .await
            .ok()?
            .ok()?;
        let line = said[..n].split(|&b| b == b'\r' || b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?.strip_prefix('-')?;
        Some(text.to_owned())
    }

    /// `redis_version` from `INFO server`.
    pub async fn redis_version(&self) -> Result<String, StoreError> {
        let info: String = self.run(redis::cmd("INFO").arg("server")).await?;
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| StoreError::Protocol("INFO without redis_version".into()))
    }

    /// Replicas in sync (`slaveN:…,state=online,…` in `INFO replication`): those a `WAIT`
    /// can count on now. One still loading its first copy is connected but not counted.
    pub async fn connected_replicas(&self) -> Result<u32, StoreError> {
        let info: String = self.run(redis::cmd("INFO").arg("replication")).await?;
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count();
        Ok(online as u32)
    }

    /// `CONFIG GET name`: `Ok(None)` if the parameter is unknown; `Err(Refused)` where
    /// `CONFIG` is disabled (managed Redis).
    pub async fn config_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let pairs: Vec<String> = self.run(redis::cmd("CONFIG").arg("GET").arg(name)).await?;
        Ok(pairs.get(1).cloned())
    }
}

impl Store {
    /// The smallest id in `group`'s pending list, if any (`XPENDING` summary form).
    pub async fn oldest_pending(&self, group: &str) -> Result<Option<String>, StoreError> {
        let reply: redis::Value = self
            .run(redis::cmd("XPENDING").arg(&self.keys.stream).arg(group))
            .await?;
        let redis::Value::Array(parts) = reply else {
            return Err(StoreError::Protocol(
                "XPENDING reply is not an array".into(),
            ));
        };
        Ok(parts
            .get(1)
            .and_then(super::record::bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// Deletes the entries with ids below `min_id` (exact `XTRIM … MINID`); returns how many.
    pub async fn trim_below(&self, min_id: &str) -> Result<u64, StoreError> {
        self.run(
            redis::cmd("XTRIM")
                .arg(&self.keys.stream)
                .arg("MINID")
                .arg("=")
                .arg(min_id),
        )
        .await
    }
}
