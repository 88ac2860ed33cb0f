//! Cold-path key traffic in cluster mode: the prefill, the `--verify-writes` read-back and the
//! increment_check audit send their commands through a [`ClusterPipeline`] of their own, so
//! each one reaches the master of its key's slot (MOVED/ASK followed) instead of the first seed.
//!
//! [`exchange`] runs one batch and hands the caller each command's final reply; redirect
//! replies are counted (they are calls the server saw and counts in `INFO commandstats`), not
//! handed on. Not per command on the hot path: these run before or after the measured run.

use std::sync::Arc;

use crate::client::ConnectError;
use crate::client::cluster::{ClusterPipeline, ClusterWatch, Event};
use crate::config::RedisConfig;
use crate::proto::Reply;

/// A pipeline for one cold-path task, connected to every master now (a bad password or an
/// unreachable node fails the task at once).
pub fn pipeline(
    watch: &Arc<ClusterWatch>,
    cfg: &RedisConfig,
    client_name: &str,
) -> Result<ClusterPipeline, ConnectError> {
    let mut p = ClusterPipeline::new(Arc::clone(watch), cfg, 0);
    p.connect_all(cfg, client_name)?;
    Ok(p)
}

/// Sends the units encoded since `pipeline.begin()` (ops `0..ops`, one reply each) and calls
/// `on_reply(op, reply, payload)` once per op with its final reply. Returns the redirect
/// replies seen (extra server calls). A command that got no reply (its node failed or could
/// not be reached), or was still redirected after the pipeline's last re-send, fails the
/// batch: the caller cannot know its outcome.
pub fn exchange(
    pipeline: &mut ClusterPipeline,
    cfg: &RedisConfig,
    client_name: &str,
    ops: usize,
    command: &'static str,
    on_reply: &mut dyn FnMut(usize, &Reply, &[u8]),
) -> Result<u64, ConnectError> {
    let mut answered = vec![false; ops];
    let mut redirects = 0;
    let mut failure: Option<ConnectError> = None;
    pipeline.exchange(cfg, client_name, &mut |event| match event {
        Event::Reply {
            op,
            reply,
            payload,
            redirect,
            ..
        } => {
            if redirect {
                redirects += 1;
            } else {
                answered[op] = true;
                on_reply(op, reply, payload);
            }
        }
        Event::Failed { ops, class, sent } => {
            failure.get_or_insert_with(|| ConnectError::Rejected {
                command,
                message: format!(
                    "{} command(s) {} ({class})",
                    ops.len(),
                    if sent {
                        "lost their cluster node's connection"
                    } else {
                        "could not reach their cluster node"
                    }
                ),
                class,
            });
        }
        Event::Connect { .. } | Event::Dropped { .. } | Event::Node(_) => {}
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(op) = answered.iter().position(|a| !a) {
        return Err(ConnectError::Rejected {
            command,
            message: format!("command {op} of the batch was still redirected after re-sending"),
            class: crate::error::ErrorClass::ClusterError,
        });
    }
    Ok(redirects)
}
