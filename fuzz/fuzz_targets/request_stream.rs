//! A byte stream of pipelined requests, parsed the way a connection does (head, then the
//! body its framing announces, then the next request), whole and split in two at a
//! fuzzer-chosen offset. Never a panic, and both ways give the same requests and verdict.
#![no_main]

use crm_relay::http::{ChunkedDecoder, Framing, HeadLimits, RequestError, parse_head};
use libfuzzer_sys::fuzz_target;

const LIMITS: HeadLimits = HeadLimits { max_head: 16 * 1024, max_headers: 100, max_body: 64 * 1024 };

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Request { method: String, target: String, body: Vec<u8> },
    Refused(RequestError),
}

/// Parses as much of the stream as has arrived; unconsumed bytes stay in `buf`.
#[derive(Default)]
struct Model {
    buf: Vec<u8>,
    pending: Option<(String, String, Framing)>,
    chunked: Option<(ChunkedDecoder, Vec<u8>)>,
    dead: bool,
}

impl Model {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        if self.dead {
            return;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.pending.is_none() {
                match parse_head(&self.buf, &LIMITS) {
                    Ok(None) => return,
                    Ok(Some((head, used))) => {
                        assert!(used <= self.buf.len());
                        self.buf.drain(..used);
                        self.pending = Some((head.method, head.target, head.framing));
                    }
                    Err(e) => return self.refuse(e, out),
                }
            }
            let (method, target, framing) = self.pending.clone().expect("set above");
            let body = match framing {
                Framing::None => Vec::new(),
                Framing::Length(n) => {
                    let n = n as usize;
                    if self.buf.len() < n {
                        return;
                    }
                    let rest = self.buf.split_off(n);
                    std::mem::replace(&mut self.buf, rest)
                }
                Framing::Chunked => {
                    let (dec, body) = self.chunked.get_or_insert_with(|| (ChunkedDecoder::new(LIMITS.max_body), Vec::new()));
                    match dec.decode(&self.buf, body) {
                        Ok(used) => {
                            self.buf.drain(..used);
                        }
                        Err(e) => return self.refuse(e, out),
                    }
                    if !dec.is_done() {
                        return;
                    }
                    let (_, body) = self.chunked.take().expect("set above");
                    assert!(body.len() as u64 <= LIMITS.max_body);
                    body
                }
            };
            self.pending = None;
            out.push(Event::Request { method, target, body });
        }
    }

    fn refuse(&mut self, e: RequestError, out: &mut Vec<Event>) {
        self.dead = true; // nothing after a framing error is parsed
        out.push(Event::Refused(e));
    }
}

fn run(pieces: &[&[u8]]) -> Vec<Event> {
    let mut model = Model::default();
    let mut out = Vec::new();
    for p in pieces {
        model.feed(p, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let cut = (cut as usize * stream.len()) / 255;
    let whole = run(&[stream]);
    let split = run(&[&stream[..cut], &stream[cut..]]);
    // A head too large or with too many headers can be detected earlier in the split case
    // (a prefix over the limit), so compare the requests before any refusal, and that both
    // refused or neither did.
    let requests = |v: &[Event]| v.iter().filter(|e| matches!(e, Event::Request { .. })).count();
    let refused = |v: &[Event]| v.iter().any(|e| matches!(e, Event::Refused(_)));
    assert_eq!(requests(&whole), requests(&split), "{whole:?} vs {split:?}");
    assert_eq!(refused(&whole), refused(&split), "{whole:?} vs {split:?}");
    assert_eq!(&whole[..requests(&whole)], &split[..requests(&split)]);
});
