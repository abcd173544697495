//! A scriptable HTTP sink standing in for the local app: records every request (method,
//! path, ordered headers, raw body) and answers each as its script says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_relay::http::{self, Head, Limits, Request, Response};
use crm_relay::shutdown::{self, Trigger};

/// What the sink does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never answer (the client's forward timeout must fire).
    Hang,
}

/// A request as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
}

/// Decides the answer from the request and how many times this body was seen before.
pub type Script = dyn Fn(&Received, usize) -> Answer + Send + Sync;

#[derive(Default)]
struct State {
    received: Vec<Received>,
    seen: HashMap<Vec<u8>, usize>,
}

struct Handler {
    state: Arc<Mutex<State>>,
    script: Arc<Mutex<Box<Script>>>,
}

impl http::Handler for Handler {
    fn check_head(&self, _: &Head) -> Option<Response> {
        None
    }

    async fn handle(&self, req: Request) -> Response {
        let rec = Received {
            method: req.head.method.clone(),
            path: req.head.target.clone(),
            headers: req.head.headers.clone(),
            body: req.body,
        };
        let answer = {
            let mut st = self.state.lock().unwrap();
            let n = *st
                .seen
                .entry(rec.body.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            st.received.push(rec.clone());
            (self.script.lock().unwrap())(&rec, n)
        };
        match answer {
            Answer::Status(s) => Response::text(s, "sink"),
            Answer::Hang => std::future::pending().await,
        }
    }
}

/// The sink on `127.0.0.1:0`.
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    script: Arc<Mutex<Box<Script>>>,
    /// Stops the listener; `None` while the sink is down.
    trigger: Mutex<Option<Trigger>>,
}

impl Sink {
    /// A sink answering `200` to everything.
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State::default())),
            script: Arc::new(Mutex::new(Box::new(|_, _| Answer::Status(200)))),
            trigger: Mutex::new(None),
        };
        sink.serve(listener);
        sink
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let handler = Arc::new(Handler {
            state: self.state.clone(),
            script: self.script.clone(),
        });
        let (trigger, shutdown) = shutdown::channel();
        let mut limits = Limits::new(16 * 1024 * 1024, 1000);
        limits.drain_timeout = Duration::from_millis(100);
        tokio::spawn(http::serve(listener, handler, limits, shutdown));
        *self.trigger.lock().unwrap() = Some(trigger);
    }

    /// Down: the port is closed, connections are refused.
    pub async fn down(&self) {
        if let Some(t) = self.trigger.lock().unwrap().take() {
            t.trigger();
        }
        // Wait until the listener is really gone.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sink still accepting after down()");
    }

    /// Up again on the same port.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind sink port");
        self.serve(listener);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/in", self.addr)
    }

    pub fn script(&self, f: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Box::new(f);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    /// Waits until `check` holds over the received requests, up to `limit`.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&[Received]) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if check(&self.state.lock().unwrap().received) {
                return true;
            }
            if tokio::time::Instant::now() > end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
