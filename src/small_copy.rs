//! The static (musl) build's `memcpy` for small and medium sizes.
//!
//! musl's x86_64 `memcpy` starts every copy with `rep movsq` and finishes byte by byte with
//! `movsb`: slow for the one- to sixteen-byte copies that packing a Redis command makes (`$`,
//! a length, `\r\n` for each argument, in the redis crate; measured: 54 calls per webhook,
//! most under 16 bytes, 9-10% of the static server's CPU), and still 3.5% for the few copies
//! of up to a few KB per webhook (the body into the command). glibc picks a copy by size; this
//! does the same up to `MEDIUM` bytes and hands larger ones to musl's.
//!
//! The linker redirects every call to `memcpy` here (`--wrap=memcpy`, set by `build.rs` for
//! the static x86_64 binary only); `__real_memcpy` is musl's. The library stays
//! `#![forbid(unsafe_code)]`: this file is the binary's, like the allocator choice.

/// Copies up to this size take the 32-byte loop: a typical webhook's body (a KB or two) and
/// everything smaller. Larger ones go to musl, whose `rep movsq` start matters less the
/// longer the copy (where the two cross was not measured).
const MEDIUM: usize = 4096;

/// Copies `n` bytes from `src` to `dest` (which do not overlap) with at most four loads and
/// four stores up to 32 bytes, 32 bytes a step up to `MEDIUM`, or with `large` above. Loads
/// and stores of whole integers compile to plain moves, never to a call back into `memcpy`.
///
/// # Safety
/// As `memcpy`: `src` readable and `dest` writable for `n` bytes, the ranges disjoint.
#[inline(always)]
pub unsafe fn copy(
    dest: *mut u8,
    src: *const u8,
    n: usize,
    large: unsafe fn(*mut u8, *const u8, usize),
) {
    use std::ptr::{read_unaligned as load, write_unaligned as store};
    // SAFETY: every access below is within [src, src + n) and [dest, dest + n): for each
    // size class, the first access starts at offset 0 and the last ends at offset n.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                let (a, b, c) = (*src, *src.add(n / 2), *src.add(n - 1));
                *dest = a;
                *dest.add(n / 2) = b;
                *dest.add(n - 1) = c;
            }
            4..=7 => {
                let (a, b) = (load(src.cast::<u32>()), load(src.add(n - 4).cast::<u32>()));
                store(dest.cast::<u32>(), a);
                store(dest.add(n - 4).cast::<u32>(), b);
            }
            8..=16 => {
                let (a, b) = (load(src.cast::<u64>()), load(src.add(n - 8).cast::<u64>()));
                store(dest.cast::<u64>(), a);
                store(dest.add(n - 8).cast::<u64>(), b);
            }
            17..=32 => {
                let (a, b) = (
                    load(src.cast::<u128>()),
                    load(src.add(n - 16).cast::<u128>()),
                );
                store(dest.cast::<u128>(), a);
                store(dest.add(n - 16).cast::<u128>(), b);
            }
            33..=MEDIUM => {
                // 32 bytes a step, then the last 32 (overlapping the previous step).
                let mut at = 0;
                while at + 32 < n {
                    let (a, b) = (
                        load(src.add(at).cast::<u128>()),
                        load(src.add(at + 16).cast::<u128>()),
                    );
                    store(dest.add(at).cast::<u128>(), a);
                    store(dest.add(at + 16).cast::<u128>(), b);
                    at += 32;
                }
                let (a, b) = (
                    load(src.add(n - 32).cast::<u128>()),
                    load(src.add(n - 16).cast::<u128>()),
                );
                store(dest.add(n - 32).cast::<u128>(), a);
                store(dest.add(n - 16).cast::<u128>(), b);
            }
            _ => large(dest, src, n),
        }
    }
}

#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
mod wrap {
    unsafe extern "C" {
        fn __real_memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    }

    unsafe fn musl(dest: *mut u8, src: *const u8, n: usize) {
        // SAFETY: the caller's memcpy contract, passed on unchanged.
        unsafe {
            __real_memcpy(dest, src, n);
        }
    }

    /// Every `memcpy` call in the static binary, Rust's and musl's own.
    ///
    /// # Safety
    /// The `memcpy` contract.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __wrap_memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller's memcpy contract is `copy`'s.
        unsafe { super::copy(dest, src, n, musl) };
        dest
    }
}

#[cfg(test)]
mod tests {
    use super::{MEDIUM, copy};

    unsafe fn reference(dest: *mut u8, src: *const u8, n: usize) {
        for i in 0..n {
            // SAFETY: as `copy`.
            unsafe { *dest.add(i) = *src.add(i) };
        }
    }

    /// Every size up to 160 at every alignment within 16 bytes, on both sides, and sizes
    /// around `MEDIUM` at a few: exactly the `n` bytes change, each to its source byte.
    #[test]
    fn copies_exactly_n_bytes_at_any_alignment() {
        let all: Vec<usize> = (0..16).collect();
        let some = [0, 1, 7, 15];
        let cases = (0..=160)
            .map(|n| (n, &all[..]))
            .chain((MEDIUM - 40..=MEDIUM + 40).map(|n| (n, &some[..])));
        let src: Vec<u8> = (0..MEDIUM + 100)
            .map(|b| (b as u8).wrapping_mul(37).wrapping_add((b >> 8) as u8))
            .collect();
        for (n, offsets) in cases {
            for &from in offsets {
                for &to in offsets {
                    let mut dest = vec![0xEEu8; n + 32];
                    // SAFETY: from + n and to + n are within src and dest; separate buffers.
                    unsafe {
                        copy(
                            dest.as_mut_ptr().add(to),
                            src.as_ptr().add(from),
                            n,
                            reference,
                        )
                    };
                    assert!(dest[..to].iter().all(|&b| b == 0xEE), "n={n} to={to}");
                    assert!(
                        dest[to..to + n] == src[from..from + n],
                        "n={n} {from}->{to}"
                    );
                    assert!(dest[to + n..].iter().all(|&b| b == 0xEE), "n={n} to={to}");
                }
            }
        }
    }
}
