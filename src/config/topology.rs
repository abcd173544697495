//! Where the data lives beyond one Redis: Sentinel (`RELAY_SENTINELS`), Cluster
//! (`RELAY_CLUSTER_NODES`), partitions (`RELAY_PARTITIONS`), and how many replicas must
//! hold a webhook before the server answers `200` (`RELAY_MIN_REPLICAS`).

use std::time::Duration;

use super::{Lookup, Secret, parse_count, parse_duration, parse_list, parsed, var};
use crate::error::ConfigError;

/// The values `RELAY_PARTITIONS` may take.
pub const PARTITIONS: std::ops::RangeInclusive<usize> = 1..=256;

/// How the relay finds the Redis node that holds a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// `REDIS_URL` is the node.
    Single,
    /// The primary that these sentinels name for `master`.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        password: Option<Secret>,
    },
    /// The master that owns each partition's hash slot, found through these nodes.
    Cluster { nodes: Vec<(String, u16)> },
}

/// The topology settings every role shares.
#[derive(Debug, Clone)]
pub struct Topology {
    pub redis: RedisTopology,
    /// `RELAY_PARTITIONS`: streams the webhooks are spread over.
    pub partitions: usize,
    /// `RELAY_MIN_REPLICAS`: replicas that must confirm a webhook before its `200`.
    pub min_replicas: u32,
    /// `RELAY_REPLICA_TIMEOUT`: how long the server waits for them.
    pub replica_timeout: Duration,
}

impl Topology {
    pub fn load(get: Lookup, stream: &str, dlq: &str) -> Result<Topology, ConfigError> {
        let sentinels = addresses(get, "RELAY_SENTINELS")?;
        let nodes = addresses(get, "RELAY_CLUSTER_NODES")?;
        let redis = match (sentinels.is_empty(), nodes.is_empty()) {
            (true, true) => RedisTopology::Single,
            (false, true) => RedisTopology::Sentinel {
                sentinels,
                master: var(get, "RELAY_SENTINEL_MASTER")
                    .map_or_else(|| "mymaster".to_owned(), |m| m.trim().to_owned()),
                password: var(get, "RELAY_SENTINEL_PASSWORD").map(Secret::new),
            },
            (true, false) => RedisTopology::Cluster { nodes },
            (false, false) => {
                return Err(ConfigError::new(
                    "RELAY_SENTINELS",
                    "cannot be set together with RELAY_CLUSTER_NODES: a Redis Cluster fails over by itself",
                ));
            }
        };
        let partitions = parsed(get, "RELAY_PARTITIONS", "1", parse_count)?;
        let partitions = usize::try_from(partitions).unwrap_or(usize::MAX);
        if !PARTITIONS.contains(&partitions) {
            return Err(ConfigError::new("RELAY_PARTITIONS", "must be 1 to 256"));
        }
        if partitions > 1 && (hash_tag(stream).is_none() || hash_tag(stream) != hash_tag(dlq)) {
            return Err(ConfigError::new(
                "RELAY_PARTITIONS",
                "needs RELAY_STREAM and RELAY_DLQ_STREAM to share one hash tag, like relay:{webhooks} and relay:{webhooks}:dlq",
            ));
        }
        let min_replicas = parsed(get, "RELAY_MIN_REPLICAS", "0", |s| {
            s.parse::<u64>()
                .map_err(|_| crate::error::Invalid(format!("{s:?} is not a number of replicas")))
        })?;
        let replica_timeout = parsed(get, "RELAY_REPLICA_TIMEOUT", "1s", parse_duration)?;
        if min_replicas > 0
            && !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&replica_timeout)
        {
            return Err(ConfigError::new(
                "RELAY_REPLICA_TIMEOUT",
                "must be 1ms to 10s: a sender waits for it",
            ));
        }
        Ok(Topology {
            redis,
            partitions,
            min_replicas: u32::try_from(min_replicas)
                .map_err(|_| ConfigError::new("RELAY_MIN_REPLICAS", "too large"))?,
            replica_timeout,
        })
    }

    /// For the start-up line and `check`: `topology=… partitions=N min_replicas=N`, no
    /// password, no spaces inside a value.
    pub fn display(&self) -> String {
        let join = |a: &[(String, u16)]| {
            a.iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let redis = match &self.redis {
            RedisTopology::Single => "single".to_owned(),
            RedisTopology::Sentinel {
                sentinels, master, ..
            } => format!("sentinel({master}@{})", join(sentinels)),
            RedisTopology::Cluster { nodes } => format!("cluster({})", join(nodes)),
        };
        format!(
            "topology={redis} partitions={} min_replicas={}",
            self.partitions, self.min_replicas
        )
    }
}

/// The text between the first `{` and the next `}`, when not empty: the part of a key that
/// decides its cluster slot.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = open + 1 + key[open + 1..].find('}')?;
    (close > open + 1).then(|| &key[open + 1..close])
}

/// The name of `key` in partition `p` of `n`: the partition number joins the hash tag, so
/// each partition has a slot of its own that its stream and DLQ share. One partition keeps
/// the names as they are.
///
/// The tag is `<tag>:<p>`, or `<tag>:<p>.<k>` with the smallest `k` that puts its slot in the
/// `p`-th `n`-th of the slot space: a cluster whose slots are spread evenly over `n` masters
/// (what `redis-cli --cluster create` does) then holds one partition per master, where plain
/// numbering would leave it to chance (`webhooks:0` and `webhooks:1` share a third).
pub fn partition_key(key: &str, p: usize, n: usize) -> String {
    match (n, key.find('{'), hash_tag(key)) {
        (1, _, _) | (_, None, _) | (_, _, None) => key.to_owned(),
        (_, Some(open), Some(tag)) => {
            let close = open + 1 + tag.len();
            let part = partition_tag(tag, p, n);
            format!("{}{part}{}", &key[..open + 1], &key[close..])
        }
    }
}

/// The hash tag of partition `p` of `n`: see `partition_key`.
fn partition_tag(tag: &str, p: usize, n: usize) -> String {
    // Two slots away from either end of the range, as redis-cli rounds its boundaries.
    let wanted = |t: &str| {
        let slot = usize::from(slot_of(t));
        let (lo, hi) = (slot.saturating_sub(2), (slot + 2).min(SLOTS - 1));
        lo * n / SLOTS == p && hi * n / SLOTS == p
    };
    let plain = format!("{tag}:{p}");
    if wanted(&plain) {
        return plain;
    }
    // About n tries on average; the bound only guards against a pathological hash.
    (1..100_000)
        .map(|k| format!("{tag}:{p}.{k}"))
        .find(|t| wanted(t))
        .unwrap_or(plain)
}

/// Slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// The cluster slot of a key whose hash tag is `tag` (the text between `{` and `}`):
/// CRC16 (XMODEM) modulo 16384, as the Redis Cluster specification defines it.
pub fn slot_of(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// `host:port,host:port`.
fn addresses(get: Lookup, name: &str) -> Result<Vec<(String, u16)>, ConfigError> {
    var(get, name)
        .map_or_else(Vec::new, |v| parse_list(&v))
        .iter()
        .map(|a| {
            let (host, port) = a
                .rsplit_once(':')
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| ConfigError::new(name, format!("{a:?} is not host:port")))?;
            let port = port
                .parse()
                .map_err(|_| ConfigError::new(name, format!("{a:?} has no valid port")))?;
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Topology, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Topology::load(&get, "relay:{webhooks}", "relay:{webhooks}:dlq")
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // CRC16/XMODEM's check value, and slots Redis itself reports (CLUSTER KEYSLOT).
        assert_eq!(slot_of("123456789"), 0x31C3);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("somekey"), 11058);
    }

    #[test]
    fn partitions_put_their_number_in_the_hash_tag_one_per_nth_of_the_slots() {
        assert_eq!(partition_key("relay:{webhooks}", 0, 1), "relay:{webhooks}");
        assert_eq!(
            partition_key("relay:{webhooks}", 2, 3),
            "relay:{webhooks:2}"
        );
        assert_eq!(
            partition_key("relay:{webhooks}:dlq", 2, 3),
            "relay:{webhooks:2}:dlq"
        );
        // webhooks:1 hashes to slot 700, in the first third: partition 1 takes another name.
        assert_eq!(slot_of("webhooks:1"), 700);
        let one = partition_key("relay:{webhooks}", 1, 3);
        assert!(hash_tag(&one).unwrap().starts_with("webhooks:1."), "{one}");
        for n in [2, 3, 4, 6, 16] {
            for p in 0..n {
                let key = partition_key("relay:{webhooks}", p, n);
                let slot = usize::from(slot_of(hash_tag(&key).unwrap()));
                assert_eq!(slot * n / SLOTS, p, "{key} of {n}");
                let dlq = partition_key("relay:{webhooks}:dlq", p, n);
                assert_eq!(hash_tag(&dlq), hash_tag(&key));
            }
        }
        assert_eq!(
            hash_tag("a{}b{c}"),
            None,
            "an empty tag hashes the whole key"
        );
        assert_eq!(hash_tag("x:{t}:y"), Some("t"));
    }

    #[test]
    fn topologies_are_checked() {
        let t = load(&[]).unwrap();
        assert_eq!(
            (t.redis, t.partitions, t.min_replicas),
            (RedisTopology::Single, 1, 0)
        );
        let t = load(&[("RELAY_SENTINELS", "10.0.0.1:26379, [::1]:26380")]).unwrap();
        assert_eq!(
            t.redis,
            RedisTopology::Sentinel {
                sentinels: vec![("10.0.0.1".into(), 26379), ("::1".into(), 26380)],
                master: "mymaster".into(),
                password: None
            }
        );
        let both = [("RELAY_SENTINELS", "a:1"), ("RELAY_CLUSTER_NODES", "b:2")];
        assert!(
            load(&both)
                .unwrap_err()
                .to_string()
                .contains("RELAY_CLUSTER_NODES")
        );
        assert!(load(&[("RELAY_SENTINELS", "nohost")]).is_err());
        assert!(load(&[("RELAY_PARTITIONS", "0")]).is_err());
        let t = load(&[
            ("RELAY_CLUSTER_NODES", "127.0.0.1:7000"),
            ("RELAY_PARTITIONS", "3"),
        ]);
        assert_eq!(t.unwrap().partitions, 3);
        let get = |n: &str| (n == "RELAY_PARTITIONS").then(|| "2".to_owned());
        let e = Topology::load(&get, "plain", "plain:dlq").unwrap_err();
        assert!(e.to_string().contains("hash tag"), "{e}");
        let slow = [("RELAY_MIN_REPLICAS", "1"), ("RELAY_REPLICA_TIMEOUT", "1m")];
        assert!(load(&slow).is_err());
    }
}
