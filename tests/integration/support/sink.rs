//! A scriptable app standing in for the local app, on raw sockets so that it can behave like
//! real servers do: answer before reading the body and close (gunicorn's body limit), reset,
//! drop a kept-alive request, answer in HTTP/1.0, throttle with `Retry-After`, or hang.
//! Records every request (method, path, ordered headers, raw body).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// What the sink does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Reads the body, answers this status, keeps the connection.
    Status(u16),
    /// Like `Status`, with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Reads the body, then resets the connection (RST) without an answer.
    Reset,
    /// Reads the body, then closes the connection (FIN) without an answer.
    Drop,
    /// Answers `HTTP/1.0 <status>` without `Connection: keep-alive`, then reads nothing more
    /// on that connection (which stays open): reusing it can only time out.
    Http10(u16),
    /// Never answers (the client's forward timeout must fire).
    Hang,
}

/// A request as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Empty when the sink answered early without reading it.
    pub body: Vec<u8>,
    /// The request head as received, bytes exactly.
    pub head: Vec<u8>,
    /// 0 for the first request on its connection, 1 for the next, …
    pub on_connection: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn relay_id(&self) -> String {
        self.header("x-relay-id").expect("X-Relay-Id").to_owned()
    }

    pub fn attempt(&self) -> u32 {
        self.header("x-relay-attempt")
            .expect("X-Relay-Attempt")
            .parse()
            .expect("number")
    }

    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .map_or(0, |v| v.parse().expect("length"))
    }
}

/// Decides the answer from the request and how many times this body was seen before.
pub type Script = dyn Fn(&Received, usize) -> Answer + Send + Sync;
/// Decides from the head alone (body not read) whether to answer early with a status.
pub type Early = dyn Fn(&Received) -> Option<u16> + Send + Sync;

#[derive(Default)]
struct State {
    received: Vec<Received>,
    seen: HashMap<Vec<u8>, usize>,
}

struct Shared {
    state: Mutex<State>,
    script: Mutex<Arc<Script>>,
    early: Mutex<Arc<Early>>,
}

/// The sink on `127.0.0.1:0`.
pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop and every connection; `None` while the sink is down.
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Sink {
    /// A sink answering `200` to everything.
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                script: Mutex::new(Arc::new(|_, _| Answer::Status(200))),
                early: Mutex::new(Arc::new(|_| None)),
            }),
            tasks: Mutex::new(None),
        };
        sink.serve(listener);
        sink
    }

    fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        let mut set = JoinSet::new();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(stream, shared.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        *self.tasks.lock().unwrap() = Some(set);
    }

    /// Down: the port is closed and every open connection is dropped.
    pub async fn down(&self) {
        let tasks = self.tasks.lock().unwrap().take();
        if let Some(mut set) = tasks {
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        assert!(
            TcpStream::connect(self.addr).await.is_err(),
            "sink still accepting after down()"
        );
    }

    /// Up again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind sink port");
        self.serve(listener);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/in", self.addr)
    }

    pub fn script(&self, f: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static) {
        *self.shared.script.lock().unwrap() = Arc::new(f);
    }

    /// Answers with the returned status as soon as a head arrives, before reading the body,
    /// then closes the connection with the body unread (as gunicorn does past its limit).
    pub fn early(&self, f: impl Fn(&Received) -> Option<u16> + Send + Sync + 'static) {
        *self.shared.early.lock().unwrap() = Arc::new(f);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.state.lock().unwrap().received.clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.shared.state.lock().unwrap().received.len()
    }

    /// Waits until `check` holds over the received requests, up to `limit`.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&[Received]) -> bool) -> bool {
        super::eventually(limit, || {
            let ok = check(&self.shared.state.lock().unwrap().received);
            std::future::ready(ok)
        })
        .await
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    for on_connection in 0.. {
        let Some((head_len, mut rec)) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        rec.on_connection = on_connection;
        buf.drain(..head_len);
        let early = shared.early.lock().unwrap().clone();
        if let Some(status) = early(&rec) {
            shared.state.lock().unwrap().received.push(rec);
            let _ = stream.write_all(&response("1.1", status, None, true)).await;
            return; // closed with the body unread: the kernel answers further data with RST
        }
        let len = rec.content_length();
        while buf.len() < len {
            if !fill(&mut stream, &mut buf).await {
                return;
            }
        }
        rec.body = buf.drain(..len).collect();
        let answer = {
            let mut st = shared.state.lock().unwrap();
            let n = *st
                .seen
                .entry(rec.body.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            st.received.push(rec.clone());
            let script = shared.script.lock().unwrap().clone();
            script(&rec, n)
        };
        let out = match answer {
            Answer::Status(s) => response("1.1", s, None, false),
            Answer::RetryAfter(s, secs) => response("1.1", s, Some(secs), false),
            Answer::Http10(s) => response("1.0", s, None, false),
            Answer::Reset => {
                #[allow(deprecated)] // SO_LINGER 0: close() sends RST, which is the point
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Answer::Drop => return,
            Answer::Hang => return std::future::pending().await,
        };
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if matches!(answer, Answer::Http10(_)) {
            return std::future::pending().await;
        }
    }
}

fn response(version: &str, status: u16, retry_after: Option<u64>, close: bool) -> Vec<u8> {
    let mut out = format!("HTTP/{version} {status} Sink\r\nContent-Length: 4\r\n");
    if let Some(secs) = retry_after {
        out.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\nsink");
    out.into_bytes()
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(usize, Received)> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut slots);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let rec = Received {
                method: req.method?.to_owned(),
                path: req.path?.to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
                body: Vec::new(),
                head: buf[..n].to_vec(),
                on_connection: 0,
            };
            return Some((n, rec));
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}
