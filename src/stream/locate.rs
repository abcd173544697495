//! Which Redis node to talk to: the one of `REDIS_URL`; the primary Sentinel names; or the
//! Cluster master that owns a partition's hash slot. Asked again on every reconnect, so a
//! failover is followed by the next command after the old connection failed (a dead node,
//! or one that answers `READONLY`/`MOVED`: see `StoreError::from_redis`).
//!
//! `REDIS_URL` keeps saying how to speak to a data node (TLS, user, password, database);
//! only its host and port are replaced by the node found.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, RedisConnectionInfo,
    RedisError, Value,
};

use super::StoreError;
use crate::config::{RedisTopology, Secret, slot_of};

/// How long one sentinel or cluster node may take to answer where the primary is.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// Finds the data node for one partition.
pub(super) struct Locator {
    /// `REDIS_URL` as connection settings.
    base: ConnectionInfo,
    ca: Option<Vec<u8>>,
    kind: Kind,
}

enum Kind {
    /// `REDIS_URL` itself.
    Direct(Client),
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        password: Option<Secret>,
    },
    Cluster {
        /// The configured nodes, then every master seen in a slot map.
        nodes: Mutex<Vec<(String, u16)>>,
        slot: u16,
    },
}

impl Locator {
    /// A locator for the partition whose keys carry hash tag `tag`.
    pub(super) fn new(
        url: &Secret,
        ca: Option<&[u8]>,
        topology: &RedisTopology,
        tag: &str,
    ) -> Result<Locator, StoreError> {
        let base = super::url::parse(url.expose())
            .map_err(|why| StoreError::Protocol(format!("REDIS_URL {why}")))?;
        let ca = ca.map(<[u8]>::to_vec);
        let kind = match topology {
            RedisTopology::Single => Kind::Direct(client_for(&base, ca.as_deref())?),
            RedisTopology::Sentinel {
                sentinels,
                master,
                password,
            } => Kind::Sentinel {
                sentinels: sentinels.clone(),
                master: master.clone(),
                password: password.clone(),
            },
            RedisTopology::Cluster { nodes } => Kind::Cluster {
                nodes: Mutex::new(nodes.clone()),
                slot: slot_of(tag),
            },
        };
        Ok(Locator { base, ca, kind })
    }

    /// `REDIS_URL`'s host and port when it is the node and spoken to without TLS.
    pub(super) fn plain_node(&self) -> Option<(&str, u16)> {
        match (&self.kind, self.base.addr()) {
            (Kind::Direct(_), ConnectionAddr::Tcp(host, port)) => Some((host, *port)),
            _ => None,
        }
    }

    /// A client for the node to use now.
    pub(super) async fn client(&self) -> Result<Client, RedisError> {
        if let Kind::Direct(client) = &self.kind {
            return Ok(client.clone());
        }
        match self.find().await? {
            Some((host, port)) => self.node(&host, port),
            None => Err(RedisError::from((ErrorKind::Io, "no node found"))),
        }
    }

    /// The node Sentinel or the Cluster names now; `None` for `REDIS_URL` itself.
    async fn find(&self) -> Result<Option<(String, u16)>, RedisError> {
        match &self.kind {
            Kind::Direct(_) => Ok(None),
            Kind::Sentinel {
                sentinels,
                master,
                password,
            } => Ok(Some(self.ask_sentinels(sentinels, master, password).await?)),
            Kind::Cluster { nodes, slot } => Ok(Some(self.ask_cluster(nodes, *slot).await?)),
        }
    }

    /// A connection to the node to use now. Behind Sentinel, only to a node that says it is
    /// the primary: a sentinel that has not yet seen a failover names the old one.
    pub(super) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, RedisError> {
        let client = self.client().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        if let Kind::Sentinel { .. } = self.kind {
            let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
            if !matches!(&role, Value::Array(r) if r.first().is_some_and(|v| is_text(v, "master")))
            {
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "the node Sentinel named is not the primary (yet)",
                )));
            }
        }
        Ok(conn)
    }

    /// Where the topology says the data lives, for `check`: `None` for a single Redis.
    pub(super) async fn describe(&self) -> Result<Option<String>, RedisError> {
        let Some((host, port)) = self.find().await? else {
            return Ok(None);
        };
        let what = match &self.kind {
            Kind::Sentinel { master, .. } => format!("primary of {master:?} at"),
            Kind::Cluster { slot, .. } => format!("slot {slot} at master"),
            Kind::Direct(_) => "node".to_owned(),
        };
        Ok(Some(format!("{what} {host}:{port}")))
    }

    /// A client for data node `host:port`, speaking as `REDIS_URL` says.
    fn node(&self, host: &str, port: u16) -> Result<Client, RedisError> {
        let info = self
            .base
            .clone()
            .set_addr(with_host(self.base.addr(), host, port));
        client_for(&info, self.ca.as_deref()).map_err(|_| {
            RedisError::from((ErrorKind::InvalidClientConfig, "cannot build a node client"))
        })
    }

    /// Asks each sentinel in turn for the primary's address; the first answer wins.
    async fn ask_sentinels(
        &self,
        sentinels: &[(String, u16)],
        master: &str,
        password: &Option<Secret>,
    ) -> Result<(String, u16), RedisError> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(p) = password {
            settings = settings.set_password(p.expose());
        }
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(master);
        for (host, port) in sentinels {
            let info = self
                .base
                .clone()
                .set_addr(with_host(self.base.addr(), host, *port))
                .set_redis_settings(settings.clone());
            if let Ok(Value::Array(addr)) = ask(&info, self.ca.as_deref(), &cmd).await
                && let [host, port] = &addr[..]
                && let (Some(host), Some(port)) = (text(host), text(port))
                && let Ok(port) = port.parse()
            {
                return Ok((host, port));
            }
        }
        Err(RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "no sentinel named the primary",
            format!("{master:?}, asked {} sentinels", sentinels.len()),
        )))
    }

    /// Asks each known cluster node for the slot map; returns the master serving `slot`.
    async fn ask_cluster(
        &self,
        nodes: &Mutex<Vec<(String, u16)>>,
        slot: u16,
    ) -> Result<(String, u16), RedisError> {
        let known = nodes.lock().expect("node list lock").clone();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        for (host, port) in &known {
            let info = self
                .base
                .clone()
                .set_addr(with_host(self.base.addr(), host, *port));
            let Ok(map) = ask(&info, self.ca.as_deref(), &cmd).await else {
                continue;
            };
            let masters = slot_masters(&map, host);
            let mut list = nodes.lock().expect("node list lock");
            for (_, _, m) in &masters {
                if !list.contains(m) {
                    list.push(m.clone());
                }
            }
            if let Some((_, _, m)) = masters.iter().find(|(s, e, _)| (*s..=*e).contains(&slot)) {
                return Ok(m.clone());
            }
        }
        Err(RedisError::from((
            ErrorKind::ClusterConnectionNotFound,
            "no cluster node named the master of a slot",
            format!("slot {slot}, asked {} nodes", known.len()),
        )))
    }
}

/// One command on a short-lived connection, within `ASK_TIMEOUT`.
async fn ask(info: &ConnectionInfo, ca: Option<&[u8]>, cmd: &redis::Cmd) -> Result<Value, ()> {
    let client = client_for(info, ca).map_err(drop)?;
    let config = super::connection_config(ASK_TIMEOUT);
    let work = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        cmd.query_async::<Value>(&mut conn).await
    };
    match tokio::time::timeout(ASK_TIMEOUT, work).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(()),
    }
}

/// A client for `info`. With `ca` (PEM), TLS trusts exactly those roots.
pub(super) fn client_for(info: &ConnectionInfo, ca: Option<&[u8]>) -> Result<Client, StoreError> {
    crate::tls::install_default_provider();
    let invalid = |_| StoreError::Protocol("invalid REDIS_URL".into());
    match (ca, info.addr()) {
        (Some(pem), ConnectionAddr::TcpTls { .. }) => {
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            };
            Client::build_with_tls(info.clone(), certs).map_err(invalid)
        }
        _ => Client::open(info.clone()).map_err(invalid),
    }
}

/// `addr` with another host and port, TLS settings kept.
fn with_host(addr: &ConnectionAddr, host: &str, port: u16) -> ConnectionAddr {
    match addr {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    }
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, …], replicas…], …]` → ranges and their
/// master. An empty host means the node asked (`asked`).
fn slot_masters(map: &Value, asked: &str) -> Vec<(u16, u16, (String, u16))> {
    let Value::Array(ranges) = map else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(r) = range else { return None };
            let (Value::Int(start), Value::Int(end), Value::Array(master)) =
                (r.first()?, r.get(1)?, r.get(2)?)
            else {
                return None;
            };
            let host = text(master.first()?)?;
            let host = if host.is_empty() {
                asked.to_owned()
            } else {
                host
            };
            let Value::Int(port) = master.get(1)? else {
                return None;
            };
            Some((*start as u16, *end as u16, (host, *port as u16)))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn is_text(v: &Value, want: &str) -> bool {
    text(v).as_deref() == Some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_maps_name_each_range_master() {
        let node = |h: &str, p: i64| {
            Value::Array(vec![Value::BulkString(h.into()), Value::Int(p), Value::Nil])
        };
        let map = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("", 7001)]),
        ]);
        assert_eq!(
            slot_masters(&map, "seed"),
            vec![
                (0, 5460, ("10.0.0.1".to_owned(), 7000)),
                (5461, 16383, ("seed".to_owned(), 7001)),
            ]
        );
    }
}
