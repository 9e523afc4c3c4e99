//! Per-namespace TTL rules: default TTL, maximum TTL, required TTL, sliding expiry.
