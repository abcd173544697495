//! High availability with real processes on loopback: a primary with replicas and three
//! Sentinels, and a 3-master Redis Cluster with a replica each. Real server and client
//! processes under steady load keep a ledger of every webhook answered `200`; a data node
//! is SIGKILLed mid-load; every webhook in the ledger must reach the app.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{Ledger, Load};
use crate::support::link::SlowLink;
use crate::support::sink::Sink;
use crate::support::*;

/// Bytes per second between the primary and each replica: below what the load writes, so
/// asynchronous replication falls behind, as it does over a real WAN link under a burst.
const REPLICA_LINK: u64 = 24 * 1024;

/// A Sentinel process watching `mymaster`.
struct Sentinel {
    port: u16,
    child: Child,
    /// `requirepass` of the sentinel, when it has one.
    password: Option<String>,
    _dir: TempDir,
}

/// Passwords of a deployment that sets them: the data nodes', and the sentinels' own.
#[derive(Clone, Copy)]
struct Passwords {
    data: &'static str,
    sentinel: &'static str,
}

impl Sentinel {
    fn start(primary: u16, passwords: Option<Passwords>) -> Sentinel {
        let dir = TempDir::new("sentinel");
        let port = free_port();
        let conf = dir.0.join("sentinel.conf");
        let auth = passwords.map_or(String::new(), |p| {
            format!(
                "requirepass {}\nsentinel auth-pass mymaster {}\n",
                p.sentinel, p.data
            )
        });
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 10000\n{auth}",
                dir.0.display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        Sentinel {
            port,
            child,
            password: passwords.map(|p| p.sentinel.to_owned()),
            _dir: dir,
        }
    }

    /// `SENTINEL MASTER mymaster` as name → value, empty while the sentinel is not up.
    fn master(&self) -> std::collections::HashMap<String, String> {
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        let url = format!("redis://{auth}127.0.0.1:{}", self.port);
        let Ok(client) = redis::Client::open(url) else {
            return Default::default();
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return Default::default();
        };
        let flat: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg("mymaster")
            .query(&mut conn)
            .unwrap_or_default();
        flat.chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `INFO replication` field `name` of `redis`.
fn replication(redis: &Redis, name: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut redis.conn())
        .ok()?;
    info.lines().find_map(|l| {
        l.strip_prefix(&format!("{name}:"))
            .map(|v| v.trim().to_owned())
    })
}

/// A replica of `primary`, once its link to it is up.
async fn synced_replica(primary: &Redis) -> Redis {
    let port = primary.port.to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]).await;
    let synced = eventually(Duration::from_secs(20), || async {
        replication(&replica, "master_link_status").as_deref() == Some("up")
    })
    .await;
    assert!(synced, "the replica never connected");
    replica
}

/// What one failover run saw.
struct Failover {
    accepted: usize,
    lost: usize,
    duplicates: usize,
    promoted_after: Duration,
    accepting_after: Duration,
}

/// A primary with two replicas behind slow links and three sentinels; a server and a client
/// that find the primary through the sentinels; steady load; the primary's machine dies. Two
/// replicas, so that with `RELAY_MIN_REPLICAS=1` one is left to confirm writes once the
/// other has been promoted.
async fn sentinel_failover(
    stream: &str,
    extra: &[(&str, &str)],
    passwords: Option<Passwords>,
) -> Failover {
    let auth: Vec<&str> = match passwords {
        Some(p) => vec!["--requirepass", p.data, "--masterauth", p.data],
        None => Vec::new(),
    };
    let mut primary = Redis::start_with(&auth).await;
    let primary_addr = format!("127.0.0.1:{}", primary.port).parse().unwrap();
    let links = [
        SlowLink::start(primary_addr, REPLICA_LINK).await,
        SlowLink::start(primary_addr, REPLICA_LINK).await,
    ];
    let mut replicas = Vec::new();
    for link in &links {
        let port = link.addr.port().to_string();
        let mut args = vec!["--replicaof", "127.0.0.1", &port];
        args.extend_from_slice(&auth);
        replicas.push(Redis::start_with(&args).await);
    }
    let linked = eventually(Duration::from_secs(20), || async {
        replicas
            .iter()
            .all(|r| replication(r, "master_link_status").as_deref() == Some("up"))
    })
    .await;
    assert!(linked, "the replicas never synced");
    let sentinels: Vec<Sentinel> = (0..3)
        .map(|_| Sentinel::start(primary.port, passwords))
        .collect();
    let ready = eventually(Duration::from_secs(30), || async {
        sentinels.iter().all(|s| {
            let m = s.master();
            m.get("num-slaves").map(String::as_str) == Some("2")
                && m.get("num-other-sentinels").map(String::as_str) == Some("2")
        })
    })
    .await;
    assert!(
        ready,
        "the sentinels never saw each other and both replicas"
    );

    let list: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let list = list.join(",");
    let dlq = format!("{stream}:dlq");
    let mut vars = vec![
        ("RELAY_SENTINELS", list.as_str()),
        ("RELAY_SENTINEL_MASTER", "mymaster"),
        ("RELAY_DLQ_STREAM", dlq.as_str()),
    ];
    vars.extend_from_slice(extra);
    if let Some(p) = passwords {
        vars.push(("RELAY_SENTINEL_PASSWORD", p.sentinel));
    }
    // The app is down until the failover is over: webhooks wait in the stream (read and
    // retried by the client, which must follow the failover too), as they do while an app
    // is down or a client behind. An app keeping up would have them delivered from the old
    // primary before it died, hiding what a failover can lose.
    let sink = Sink::start().await;
    sink.down().await;
    let (_server, addr) = server_process_with(&primary, stream, &vars).await;
    let _client = client_process(&primary, stream, &sink.url(), &vars);
    // `check` reports what it sees through the sentinels.
    let url = primary.url();
    let mut check_vars = vars.clone();
    check_vars.extend([
        ("REDIS_URL", url.as_str()),
        ("RELAY_STREAM", stream),
        ("RELAY_API_KEYS", API_KEY),
    ]);
    let (_, out, err) = run_relay(&["check", "server"], &check_vars);
    let place = format!("primary of \"mymaster\" at 127.0.0.1:{}", primary.port);
    assert!(out.contains(&place), "{out}{err}");
    if extra.iter().any(|(k, _)| *k == "RELAY_MIN_REPLICAS") {
        assert!(out.contains("ok: 2 replicas in sync"), "{out}");
    }
    let load = Load::start(addr, 100);
    load.accepts(150).await;

    // The primary's machine dies: the process, and the replication bytes still on their way.
    let killed = Instant::now();
    let old = primary.port.to_string();
    primary.kill();
    for link in &links {
        link.cut();
    }
    let promoted = eventually(Duration::from_secs(30), || async {
        sentinels[0].master().get("port").is_some_and(|p| *p != old)
    })
    .await;
    assert!(promoted, "no replica was promoted");
    let promoted_after = killed.elapsed();
    let before = load.accepted();
    let accepting = eventually(Duration::from_secs(30), || async {
        load.accepted() > before
    })
    .await;
    assert!(accepting, "no 200 after the failover");
    let accepting_after = killed.elapsed();
    load.accepts(150).await;
    let ledger = load.stop().await;
    sink.up().await;

    // Settled once the new primary's group has nothing left to deliver.
    let port: u16 = sentinels[0].master()["port"].parse().unwrap();
    let new_primary = replicas.iter().find(|r| r.port == port).expect("a replica");
    let settled = eventually(Duration::from_secs(60), || async {
        caught_up(new_primary, stream)
    })
    .await;
    assert!(settled, "the client never caught up on the new primary");
    let (lost, duplicates) = tally(&ledger, &sink);
    Failover {
        accepted: ledger.accepted.lock().unwrap().len(),
        lost,
        duplicates,
        promoted_after,
        accepting_after,
    }
}

/// Whether every group of `stream` has read everything (`lag` 0) and acknowledged it all.
fn caught_up(redis: &Redis, stream: &str) -> bool {
    use redis::Value;
    let Ok(Value::Array(groups)) = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query::<Value>(&mut redis.conn())
    else {
        return false;
    };
    let zero = |kv: &[Value], name: &str| {
        kv.chunks(2).any(|c| {
            matches!(&c[0], Value::BulkString(k) if k == name.as_bytes())
                && c.get(1) == Some(&Value::Int(0))
        })
    };
    !groups.is_empty()
        && groups.iter().all(|g| match g {
            Value::Array(kv) => zero(kv, "lag") && zero(kv, "pending"),
            _ => false,
        })
}

/// Acknowledged webhooks that never reached the sink, and extra copies of those that did.
fn tally(ledger: &Ledger, sink: &Sink) -> (usize, usize) {
    let received = sink.received();
    let seen: HashSet<&[u8]> = received.iter().map(|r| r.body.as_slice()).collect();
    let accepted = ledger.accepted.lock().unwrap();
    let lost = accepted
        .iter()
        .filter(|b| !seen.contains(b.as_slice()))
        .count();
    (lost, received.len() - seen.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_with_min_replicas_loses_no_acknowledged_webhook() {
    let run = sentinel_failover(
        "ha:{sentinel}",
        &[("RELAY_MIN_REPLICAS", "1"), ("RELAY_REPLICA_TIMEOUT", "2s")],
        None,
    )
    .await;
    eprintln!(
        "sentinel failover, RELAY_MIN_REPLICAS=1: {} acknowledged, {} lost, {} duplicates; \
         replica promoted {:?} after the SIGKILL, 200s again after {:?}",
        run.accepted, run.lost, run.duplicates, run.promoted_after, run.accepting_after
    );
    assert_eq!(
        run.lost, 0,
        "acknowledged webhooks were lost in the failover"
    );
}

/// The same failover without `RELAY_MIN_REPLICAS`, with passwords on the data nodes
/// (`REDIS_URL`) and on the sentinels (`RELAY_SENTINEL_PASSWORD`): the loss it prints is what
/// the README quotes. Nothing is asserted about it (it depends on how far replicas lagged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_without_min_replicas_with_passwords_reports_its_loss() {
    let passwords = Passwords {
        data: "data-pw-7c1",
        sentinel: "sentinel-pw-9e2",
    };
    let run = sentinel_failover("ha:{nowait}", &[], Some(passwords)).await;
    eprintln!(
        "sentinel failover, no RELAY_MIN_REPLICAS: {} acknowledged, {} lost, {} duplicates; \
         replica promoted {:?} after the SIGKILL, 200s again after {:?}",
        run.accepted, run.lost, run.duplicates, run.promoted_after, run.accepting_after
    );
}

/// Six cluster-enabled nodes made into three masters with a replica each by `redis-cli
/// --cluster create`, as an operator does.
async fn cluster() -> Vec<Redis> {
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(
            Redis::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .await,
        );
    }
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    let out = create
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        out.status.success(),
        "redis-cli --cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            nodes.iter().all(cluster_ok)
        })
        .await,
        "the cluster never reached cluster_state:ok"
    );
    // A replica that has not finished its first sync when its master dies never takes over:
    // it reckons its data as old as the epoch (Redis compares the time since it last heard
    // from its master with the node timeout times `cluster-replica-validity-factor`).
    // `cluster_state:ok` does not wait for that; an operator checks the links before trusting
    // a failover, and so does this.
    let synced = |n: &Redis| {
        replication(n, "role").as_deref() != Some("slave")
            || replication(n, "master_link_status").as_deref() == Some("up")
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            nodes.iter().all(synced)
        })
        .await,
        "a replica never finished its first sync"
    );
    nodes
}

fn cluster_ok(node: &Redis) -> bool {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut node.conn())
        .is_ok_and(|i| i.contains("cluster_state:ok"))
}

/// The port of the master that serves `key`'s slot, asked of `node`.
fn master_of(node: &Redis, key: &str) -> u16 {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut node.conn())
        .expect("CLUSTER KEYSLOT");
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut node.conn())
        .expect("CLUSTER SLOTS");
    for range in ranges {
        let redis::Value::Array(r) = range else {
            continue;
        };
        if let (redis::Value::Int(start), redis::Value::Int(end), redis::Value::Array(m)) =
            (&r[0], &r[1], &r[2])
            && (*start..=*end).contains(&slot)
            && let redis::Value::Int(port) = m[1]
        {
            return port as u16;
        }
    }
    panic!("no master serves slot {slot}");
}

/// Three partitions on a 3-master cluster: one per master; a master's machine dies under
/// load, its replica takes over, the killed one comes back as a replica (as systemd would
/// restart it), and with `RELAY_MIN_REPLICAS=1` every acknowledged webhook arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_partitions_one_per_master_survive_a_master_failover() {
    let mut nodes = cluster().await;
    let (stream, dlq) = ("hc:{c}", "hc:{c}:dlq");
    let keys: Vec<String> = (0..3)
        .map(|p| crm_relay::config::partition_key(stream, p, 3))
        .collect();
    let masters: HashSet<u16> = keys.iter().map(|k| master_of(&nodes[0], k)).collect();
    assert_eq!(masters.len(), 3, "{keys:?} should land on three masters");
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let seeds = seeds.join(",");
    let vars = [
        ("RELAY_CLUSTER_NODES", seeds.as_str()),
        ("RELAY_PARTITIONS", "3"),
        ("RELAY_MIN_REPLICAS", "1"),
        ("RELAY_DLQ_STREAM", dlq),
    ];
    let url = nodes[0].url();
    let mut check_vars = vars.to_vec();
    check_vars.extend([
        ("REDIS_URL", url.as_str()),
        ("RELAY_STREAM", stream),
        ("RELAY_API_KEYS", API_KEY),
    ]);
    let (_, out, err) = run_relay(&["check", "server"], &check_vars);
    for key in &keys {
        let slot = crm_relay::config::slot_of(crm_relay::config::hash_tag(key).unwrap());
        let master = master_of(&nodes[0], key);
        let line = format!("ok: {key}: slot {slot} at master 127.0.0.1:{master}");
        assert!(out.contains(&line), "{line} in {out}{err}");
    }
    let sink = Sink::start().await;
    sink.down().await;
    let (_server, addr) = server_process_with(&nodes[0], stream, &vars).await;
    let _client = client_process(&nodes[0], stream, &sink.url(), &vars);
    let load = Load::start(addr, 100);
    load.accepts(150).await;

    // The master of partition 1 dies; the others are left alone.
    let victim = master_of(&nodes[0], &keys[1]);
    let i = nodes.iter().position(|n| n.port == victim).unwrap();
    let killed = Instant::now();
    nodes[i].kill();
    let w = nodes.iter().position(|n| n.port != victim).unwrap();
    let witness = &nodes[w];
    let promoted = eventually(Duration::from_secs(30), || async {
        cluster_ok(witness) && master_of(witness, &keys[1]) != victim
    })
    .await;
    if !promoted {
        // What the cluster thought, for the next reader of a CI log.
        let view = |n: &Redis| {
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query::<String>(&mut n.conn())
                .unwrap_or_else(|e| e.to_string())
        };
        let views: Vec<String> = nodes
            .iter()
            .filter(|n| n.port != victim)
            .map(|n| format!("node {}:\n{}", n.port, view(n)))
            .collect();
        panic!(
            "no replica took over the slots of {victim} within 30 s:\n{}",
            views.join("\n")
        );
    }
    let promoted_after = killed.elapsed();
    nodes[i].restart().await;
    let witness = &nodes[w];
    load.accepts(300).await;
    let ledger = load.stop().await;
    sink.up().await;
    let delivered = eventually(Duration::from_secs(60), || async {
        tally(&ledger, &sink).0 == 0
    })
    .await;
    let (lost, duplicates) = tally(&ledger, &sink);
    let accepted = ledger.accepted.lock().unwrap().len();
    eprintln!(
        "cluster, 3 partitions, RELAY_MIN_REPLICAS=1: {accepted} acknowledged, {lost} lost, \
         {duplicates} duplicates; replica took over {promoted_after:?} after the SIGKILL"
    );
    assert!(delivered && lost == 0, "{lost} acknowledged webhooks lost");
    // Every partition took webhooks.
    for key in &keys {
        let port = master_of(witness, key);
        let owner = nodes.iter().find(|n| n.port == port).unwrap();
        let len: u64 = redis::cmd("XLEN")
            .arg(key)
            .query(&mut owner.conn())
            .unwrap();
        assert!(len > 0, "{key} took no webhook");
    }
}

/// `RELAY_MIN_REPLICAS` with no replica to confirm: the webhook is on the primary but not
/// safe, so the sender gets `503` and retries; `check` says why before anyone is surprised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_replicas_without_replicas_answers_503_and_check_says_why() {
    let redis = Redis::start().await;
    let vars = [
        ("RELAY_MIN_REPLICAS", "1"),
        ("RELAY_REPLICA_TIMEOUT", "100ms"),
    ];
    let (_server, addr) = server_process_with(&redis, "ha:{alone}", &vars).await;
    let resp = Conn::request_once(
        addr,
        &post("/webhook/x", &[("X-API-Key", API_KEY)], b"unsafe"),
    )
    .await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("5"));
    let url = redis.url();
    let mut check_vars = vars.to_vec();
    check_vars.extend([
        ("REDIS_URL", url.as_str()),
        ("RELAY_STREAM", "ha:{alone}"),
        ("RELAY_API_KEYS", API_KEY),
    ]);
    let (code, out, _) = run_relay(&["check", "server"], &check_vars);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: RELAY_MIN_REPLICAS=1 but only 0 replicas are in sync"),
        "{out}"
    );
}

/// Concurrent webhooks share `WAIT` rounds: each confirms every append answered before it
/// started, instead of one `WAIT` per webhook lining them all up behind each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_webhooks_share_wait_rounds() {
    let primary = Redis::start().await;
    let _replica = synced_replica(&primary).await;
    let (_server, addr) =
        server_process_with(&primary, "ha:{rounds}", &[("RELAY_MIN_REPLICAS", "1")]).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..200 {
        sends.spawn(async move {
            let body = format!("round-{i}");
            let raw = post("/webhook/x", &[("X-API-Key", API_KEY)], body.as_bytes());
            Conn::request_once(addr, &raw).await.status
        });
    }
    let statuses = sends.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let waits = primary.commandstat("wait", "calls");
    assert!(waits > 0, "WAIT was called");
    eprintln!("200 concurrent webhooks confirmed by {waits} WAIT rounds");
    assert!(waits < 200, "{waits} WAITs for 200 webhooks");
}

/// `REDIS_URL` naming a replica (a copy-paste from the wrong line, or the old primary after a
/// failover without Sentinel): every write answers `READONLY` while reads work. The server
/// must say what is wrong, a few lines a minute, instead of alternating `redis unreachable` and
/// `redis reachable again` each time a read (retention, the backlog) works in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_url_naming_a_replica_is_said_plainly_without_flapping() {
    let primary = Redis::start().await;
    let replica = synced_replica(&primary).await;
    let (mut server, addr) = server_process(&replica, "ha:{replica}").await;
    // Writes refused, reads (the health check's PING) answered, in turn.
    for i in 0..3 {
        let raw = post(
            "/webhook/x",
            &[("X-API-Key", API_KEY)],
            format!("{i}").as_bytes(),
        );
        assert_eq!(Conn::request_once(addr, &raw).await.status, 503);
        let health = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        Conn::request_once(addr, health).await;
    }
    signal(server.child.id(), "TERM");
    let log = server.lines.rest(Duration::from_secs(10)).await;
    assert!(
        log.contains("redis answered READONLY: this node is a replica"),
        "{log}"
    );
    assert!(!log.contains("reachable again"), "{log}");
}
