//! One module per family of commands. Each command returns its exit code or a [`Fail`].
//!
//! [`Fail`]: crate::ctx::Fail

pub mod actor;
pub mod chat;
pub mod daemon;
pub mod group;
pub mod im;
pub mod info;
pub mod tail;

use crate::ctx::{CmdResult, Ctx, Fail};

/// `cccc mcp`: the stdio MCP server agent runtimes launch (identity from CCCC_GROUP_ID and
/// CCCC_ACTOR_ID). stdout carries only JSON-RPC, so errors go to stderr.
pub fn mcp(ctx: &Ctx) -> CmdResult {
    match cccc_mcp::run_stdio(ctx.home.clone()) {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("cccc mcp: {e:#}");
            Err(Fail::Exit(1))
        }
    }
}
