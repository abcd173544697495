//! TLS: `rediss://` to a redis-server with `--tls-port`, and an `https://` target, both with
//! certificates made here by openssl; a wrong CA is a clear error, never plaintext.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_relay::http::{HeadLimits, parse_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A test CA and a server certificate for 127.0.0.1/localhost signed by it, plus an
/// unrelated CA.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let d = dir.0.clone();
        let run = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(&d)
                .stderr(Stdio::null())
                .status();
            assert!(
                ok.expect("openssl is installed").success(),
                "openssl {args:?}"
            );
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        // Self-signed server certificates, as `openssl req -x509` makes them (CA:TRUE), and
        // one marked as a leaf (CA:FALSE).
        for (name, extra) in [
            ("selfsigned", None),
            ("leaf", Some("basicConstraints=critical,CA:FALSE")),
        ] {
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec![
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ];
            if let Some(e) = extra {
                args.extend(["-addext", e]);
            }
            run(&args);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

/// redis-server with TLS only (no plaintext port), its certificate from `pki`.
async fn tls_redis(pki: &Pki) -> Redis {
    let p = |n: &str| pki.path(n).to_str().unwrap().to_owned();
    let (cert, key, ca) = (p("server.pem"), p("server.key"), p("ca.pem"));
    Redis::start_tls(&[
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ])
    .await
}

/// `XLEN key` through redis-cli over TLS (our test connection helpers speak plaintext).
fn tls_xlen(redis: &Redis, pki: &Pki, key: &str) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--tls", "--cacert"])
        .arg(pki.path("ca.pem"))
        .args(["XLEN", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn config_with_ca(url: &str, stream: &str, ca: &Path) -> crm_relay::config::ServerConfig {
    let mut config = server_config(url, stream);
    config.common.ca_pem = Some(std::fs::read(ca).unwrap());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_right_ca_stores_and_a_wrong_ca_is_refused() {
    let pki = Pki::new();
    let redis = tls_redis(&pki).await;
    let url = redis.url();

    let config = config_with_ca(&url, "t:tls", &pki.path("ca.pem"));
    let relay = Relay::start_with(config, |_| {}).await;
    let resp = relay
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], b"over tls"))
        .await;
    resp.id();
    assert_eq!(tls_xlen(&redis, &pki, "t:tls"), "1");

    let config = config_with_ca(&url, "t:tls", &pki.path("other-ca.pem"));
    let wrong = Relay::start_with(config, |_| {}).await;
    let resp = wrong
        .request(&post(
            "/webhook",
            &[("X-API-Key", API_KEY)],
            b"must not store",
        ))
        .await;
    assert_eq!(resp.status, 503);
    assert_eq!(
        tls_xlen(&redis, &pki, "t:tls"),
        "1",
        "nothing stored through an untrusted connection"
    );

    let (code, out, _) = run_relay(
        &["check"],
        &[
            ("REDIS_URL", &url),
            ("RELAY_CA_FILE", pki.path("other-ca.pem").to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.to_lowercase().contains("certificate"),
        "a clear error: {out}"
    );
    let (code, out, _) = run_relay(
        &["check"],
        &[
            ("REDIS_URL", &url),
            ("RELAY_CA_FILE", pki.path("ca.pem").to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{out}");

    // rediss:// against a plaintext Redis fails instead of falling back.
    let plain = Redis::start().await;
    let (code, _, _) = run_relay(
        &["check"],
        &[("REDIS_URL", &format!("rediss://127.0.0.1:{}", plain.port))],
    );
    assert_eq!(code, 1);
}

/// An HTTPS sink with the certificate signed by the test CA.
async fn https_sink(pki: &Pki) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    https_sink_with(pki, "server").await
}

/// An HTTPS sink answering 200 to every request, recording bodies, with certificate
/// `<name>.pem`.
async fn https_sink_with(pki: &Pki, name: &str) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&pki.read(&format!("{name}.pem")))
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&pki.read(&format!("{name}.key"))).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/in",
        listener.local_addr().unwrap().port()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let limits = HeadLimits {
                    max_head: 65536,
                    max_headers: 100,
                    max_body: 1 << 20,
                };
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 8192];
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let Ok(Some((head, used))) = parse_head(&buf, &limits) else {
                        continue;
                    };
                    let crm_relay::http::Framing::Length(len) = head.framing else {
                        return;
                    };
                    if buf.len() < used + len as usize {
                        continue;
                    }
                    seen.lock()
                        .unwrap()
                        .push(buf[used..used + len as usize].to_vec());
                    buf.drain(..used + len as usize);
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_the_ca_file() {
    let pki = Pki::new();
    let redis = Redis::start().await;
    let relay = Relay::start(&redis, "t:https").await;
    let (url, bodies) = https_sink(&pki).await;
    let ca = pki.path("ca.pem");
    let client = RelayClient::start(client_config(
        &redis.url(),
        "t:https",
        &url,
        &[("RELAY_CA_FILE", ca.to_str().unwrap())],
    ));
    relay
        .request(&post(
            "/webhook",
            &[("X-API-Key", API_KEY)],
            b"secure delivery",
        ))
        .await
        .id();
    assert!(
        eventually(Duration::from_secs(10), || async {
            bodies.lock().unwrap().len() == 1
        })
        .await
    );
    assert_eq!(bodies.lock().unwrap()[0], b"secure delivery");
    client.stop().await;

    // A client that does not trust the sink's CA never delivers, and never dead-letters.
    let other = pki.path("other-ca.pem");
    let client = RelayClient::start(client_config(
        &redis.url(),
        "t:https2",
        &url,
        &[
            ("RELAY_CA_FILE", other.to_str().unwrap()),
            ("RELAY_MAX_ATTEMPTS", "1"),
        ],
    ));
    let relay2 = Relay::start(&redis, "t:https2").await;
    relay2
        .request(&post("/webhook", &[("X-API-Key", API_KEY)], b"untrusted"))
        .await
        .id();
    // Several attempts failed their TLS handshake ...
    let tried = eventually(Duration::from_secs(15), || async {
        client.metrics.deliveries.get("retried") >= 3
    })
    .await;
    assert!(tried, "the untrusted target was never tried");
    // ... and none of them reached the app.
    assert_eq!(
        bodies.lock().unwrap().len(),
        1,
        "nothing sent to an untrusted target"
    );
    assert_eq!(
        redis.xlen("t:https2:dlq"),
        0,
        "a TLS failure is retried, not dead-lettered"
    );
    assert!(client.metrics.deliveries.get("retried") >= 1);
    client.stop().await;
}

/// The system trust store counts like the bundled roots: a CA installed there (here through
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`, as OpenSSL reads them) is trusted for `https://` and
/// `rediss://` without `RELAY_CA_FILE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_trust_store_is_honoured_for_https_and_rediss() {
    let pki = Pki::new();
    let (url, bodies) = https_sink(&pki).await;
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let plain = Redis::start().await;
    let target = |file: &str| {
        run_relay(
            &["check", "client"],
            &[
                ("REDIS_URL", &plain.url()),
                ("RELAY_TARGET_URL", &url),
                ("SSL_CERT_FILE", file),
            ],
        )
    };
    let (code, out, _) = target(ca);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: target {url} reachable")),
        "{out}"
    );
    assert!(
        out.contains("tls_trust=bundled + ") && out.contains("ca.pem (1 certificates)"),
        "{out}"
    );
    // Without it (another file as the system store), the same target is untrusted.
    let other = pki.path("other-ca.pem");
    let (code, out, _) = target(other.to_str().unwrap());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TLS: unknown issuer") && out.contains("RELAY_CA_FILE"),
        "{out}"
    );

    let client = RelayClient::start(client_config(
        &plain.url(),
        "t:sys",
        &url,
        &[("SSL_CERT_FILE", ca)],
    ));
    let relay = Relay::start(&plain, "t:sys").await;
    relay
        .request(&post(
            "/webhook",
            &[("X-API-Key", API_KEY)],
            b"via the system store",
        ))
        .await
        .id();
    assert!(
        eventually(Duration::from_secs(10), || async {
            bodies.lock().unwrap().len() == 1
        })
        .await
    );
    client.stop().await;

    // rediss:// through a directory of certificates (key files and others in it are skipped).
    let tls = tls_redis(&pki).await;
    let dir = pki.path("");
    let (code, out, _) = run_relay(
        &["check", "server"],
        &[
            ("REDIS_URL", &tls.url()),
            ("RELAY_API_KEYS", "k"),
            ("SSL_CERT_FILE", "/nonexistent"),
            ("SSL_CERT_DIR", dir.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{out}");
}

/// Self-signed server certificates get errors that say what to do: a leaf (CA:FALSE) given
/// as RELAY_CA_FILE is refused at start; one marked CA:TRUE is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificates_get_errors_that_say_what_to_do() {
    let pki = Pki::new();
    let redis = Redis::start().await;
    let (url, bodies) = https_sink_with(&pki, "selfsigned").await;
    let leaf = pki.path("leaf.pem");
    let (code, _, err) = run_relay(
        &["check", "client"],
        &[
            ("REDIS_URL", &redis.url()),
            ("RELAY_TARGET_URL", &url),
            ("RELAY_CA_FILE", leaf.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("RELAY_CA_FILE")
            && err.contains("not a CA")
            && err.contains("sign the server's certificate"),
        "{err}"
    );
    let ss = pki.path("selfsigned.pem");
    let (code, out, _) = run_relay(
        &["check", "client"],
        &[
            ("REDIS_URL", &redis.url()),
            ("RELAY_TARGET_URL", &url),
            ("RELAY_CA_FILE", ss.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("presents a CA certificate as its own") && out.contains("Make a CA"),
        "{out}"
    );
    assert!(bodies.lock().unwrap().is_empty());
}

/// A sentinel that listens with TLS only and reaches its primary over TLS.
struct TlsSentinel {
    port: u16,
    child: std::process::Child,
    _dir: TempDir,
}

impl TlsSentinel {
    async fn start(pki: &Pki, primary: u16) -> TlsSentinel {
        let dir = TempDir::new("tls-sentinel");
        let port = free_port();
        let p = |n: &str| pki.path(n).display().to_string();
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 1\n",
                dir.0.display(),
                p("server.pem"),
                p("server.key"),
                p("ca.pem"),
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let mut lines = process::watch(child.stdout.take().expect("piped"), "sentinel");
        let said = lines
            .until(Duration::from_secs(10), |l| {
                l.contains("+monitor master") || l.contains("rror")
            })
            .await;
        assert!(
            said.as_deref()
                .is_some_and(|l| l.contains("+monitor master")),
            "the TLS sentinel did not start: {said:?}"
        );
        TlsSentinel {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for TlsSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rediss://` with `RELAY_SENTINELS`: the sentinels are asked over TLS too, trusting
/// `RELAY_CA_FILE`, and the primary they name is used over TLS. `REDIS_URL` names a port
/// nothing listens on: only the sentinel's answer can lead to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_are_asked_over_tls_with_rediss() {
    let pki = Pki::new();
    let primary = tls_redis(&pki).await;
    let sentinel = TlsSentinel::start(&pki, primary.port).await;
    let nowhere = format!("rediss://127.0.0.1:{}", free_port());
    let sentinels = format!("127.0.0.1:{}", sentinel.port);
    let ca = pki.path("ca.pem");
    let other_ca = pki.path("other-ca.pem");
    let check = |ca: &Path| {
        run_relay(
            &["check", "server"],
            &[
                ("REDIS_URL", nowhere.as_str()),
                ("RELAY_SENTINELS", sentinels.as_str()),
                ("RELAY_STREAM", "t:{sentinel}"),
                ("RELAY_API_KEYS", API_KEY),
                ("RELAY_CA_FILE", ca.to_str().unwrap()),
            ],
        )
    };
    let (code, out, err) = check(&ca);
    assert_eq!(code, 0, "{out}{err}");
    let found = format!("primary of \"mymaster\" at 127.0.0.1:{}", primary.port);
    assert!(out.contains(&found), "{out}");
    // The sentinel's certificate is checked like the data node's.
    let (code, out, _) = check(&other_ca);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains(&found), "{out}");

    let vars = [
        ("REDIS_URL", nowhere.as_str()),
        ("RELAY_SENTINELS", sentinels.as_str()),
        ("RELAY_CA_FILE", ca.to_str().unwrap()),
    ];
    let (_server, addr) = server_process_with(&primary, "t:{sentinel}", &vars).await;
    let resp = Conn::request_once(
        addr,
        &post("/webhook", &[("X-API-Key", API_KEY)], b"via the sentinel"),
    )
    .await;
    resp.id();
    assert_eq!(tls_xlen(&primary, &pki, "t:{sentinel}"), "1");
}
