//! Primary discovery through Redis Sentinel.
//!
//! This step holds the protocol pieces: [`client`] (the Sentinel client and
//! the `ROLE` probe), [`events`] (parsing Sentinel's event messages) and
//! `value` (reading control-plane replies). The background task that uses
//! them comes next.

pub mod client;
pub mod events;
mod value;
