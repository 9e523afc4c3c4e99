//! Tests of the RESP codec: split points, exact error texts, and property
//! tests against the `redis-protocol` crate as an independent oracle.

mod encode_tests;
mod prop_tests;
mod reply_tests;
mod request_tests;
