//! Tests of the RESP codec: split points, exact error texts, and property
//! tests against the `redis-protocol` crate as an independent oracle.

mod encode_tests;
mod prop_tests;
mod reply_tests;
mod request_tests;

/// Every text that starts with `first` and goes on with bytes of `alphabet`, up to
/// `max_len` bytes: the inputs the fast readers' agreement tests walk (complete frames,
/// ones cut short, and malformed ones alike).
pub(super) fn every_text(first: u8, alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut stack = vec![vec![first]];
    while let Some(text) = stack.pop() {
        if text.len() < max_len {
            for &b in alphabet {
                let mut longer = text.clone();
                longer.push(b);
                stack.push(longer);
            }
        }
        all.push(text);
    }
    all
}
