//! The lingering close after a refusal (nginx's `lingering_close`): closing a socket with
//! unread input sends RST, which can destroy the answer on its way and which proxies report
//! as 502. So the write side is shut first, then what the peer still sends is read and
//! discarded, within a time and a byte limit.

use std::cell::RefCell;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

thread_local! {
    /// Where lingering connections discard their input: one buffer per runtime thread,
    /// borrowed between awaits only, so a lingering connection holds none of its own (a flood
    /// of refused uploads lingers on every connection at once).
    static DISCARD: RefCell<Box<[u8]>> = RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

/// Reads and discards from `stream` until the peer stops sending, an error, `deadline`, or
/// more than `limit` bytes in all (`drained` of them already read).
pub async fn discard(stream: &TcpStream, deadline: Instant, limit: u64, mut drained: u64) {
    while drained <= limit {
        if !matches!(timeout_at(deadline, stream.readable()).await, Ok(Ok(()))) {
            return; // out of time, or an error
        }
        let read = DISCARD.with(|b| stream.try_read(&mut b.borrow_mut()));
        match read {
            Ok(n) if n > 0 => drained += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return, // end of input, or an error
        }
    }
}
