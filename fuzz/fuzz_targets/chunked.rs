//! The chunked decoder on arbitrary input, whole and split in three: never a panic, the same
//! verdict and body both ways, never more body than the limit.
#![no_main]

use crm_relay::http::{ChunkedDecoder, RequestError};
use libfuzzer_sys::fuzz_target;

const MAX: u64 = 4096;

fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize), RequestError> {
    let mut dec = ChunkedDecoder::new(MAX);
    let mut buf = Vec::new();
    let mut body = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        if !dec.is_done() {
            let used = dec.decode(&buf, &mut body)?;
            assert!(used <= buf.len());
            buf.drain(..used);
        }
        assert!(body.len() as u64 <= MAX);
    }
    Ok((body, if dec.is_done() { buf.len() } else { usize::MAX }))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (a, b) = (data[0] as usize, data[1] as usize);
    let input = &data[2..];
    let i = a * input.len() / 255;
    let j = (i + b * (input.len() - i) / 255).min(input.len());
    assert_eq!(decode(&[input]), decode(&[&input[..i], &input[i..j], &input[j..]]));
});
