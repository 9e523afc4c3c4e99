//! Replies and pub/sub frames that carry key names, rewritten for a mapped-db client.
