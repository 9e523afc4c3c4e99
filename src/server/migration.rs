//! `SIDECAR MIGRATION STATUS | PHASE <phase>`: the migration's state and its one
//! runtime switch, answered locally. The logic lives in `crate::migration`.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Client;
use crate::config::Phase;
use crate::resp::Reply;

impl<R, W> Client<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(super) async fn migration_command(&mut self, args: &[Bytes]) -> Reply {
        let Some(m) = self.ctx().migration.clone() else {
            return Reply::error(
                "ERR no migration configured (set migration.old_url in the config and restart)",
            );
        };
        match args {
            [sub] if sub.eq_ignore_ascii_case(b"STATUS") => Reply::Array(
                m.status()
                    .into_iter()
                    .map(|l| Reply::Bulk(Bytes::from(l)))
                    .collect(),
            ),
            [sub, phase] if sub.eq_ignore_ascii_case(b"PHASE") => {
                let Some(to) = Phase::parse(phase) else {
                    return Reply::error("ERR unknown phase: use off, shadow, flipped or done");
                };
                // Commands sent before the switch are answered by the store they went to.
                self.drain_quietly().await;
                match m.switch(to, "SIDECAR MIGRATION PHASE").await {
                    Ok(from) => Reply::Bulk(Bytes::from(format!(
                        "phase {} -> {} (a reload or restart applies migration.phase from the config file again)",
                        from.label(),
                        to.label()
                    ))),
                    Err(e) => Reply::error(format!("ERR {e}")),
                }
            }
            _ => Reply::error(
                "ERR syntax: SIDECAR MIGRATION STATUS | PHASE <off|shadow|flipped|done>",
            ),
        }
    }
}
