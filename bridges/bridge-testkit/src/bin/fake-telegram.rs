//! Run the fake Telegram Bot API standalone, for manual experiments with a bridge.
//!
//! ```text
//! cargo run -p bridge-testkit --bin fake-telegram -- [--port N]
//! ```
//!
//! Prints the API URL and token, then reads commands on stdin:
//! `dm <user_id> <text>` (a human writes to the bot), `group <chat_id> <user_id> <text>`,
//! `press <chat_id> <message_id> <callback_data>`, `sent` (what the bot sent), `requests`, `quit`.

use std::io::BufRead;
use std::net::SocketAddr;

use bridge_testkit::telegram::{FakeTelegram, Options};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let tg = FakeTelegram::start_with(Options {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        ..Options::default()
    });
    println!("api_url={}", tg.api_url());
    println!("token={}", tg.bot_token());
    println!("bot=@{}", tg.bot_username());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut it = line.splitn(2, ' ');
        let cmd = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("");
        let num = |s: &str| s.parse::<i64>().ok();
        match cmd {
            "dm" => {
                let (uid, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let Some(uid) = num(uid) else {
                    eprintln!("usage: dm <user_id> <text>");
                    continue;
                };
                let user = tg.user(uid, &format!("User{uid}"));
                let chat = tg.private_chat(uid);
                println!("message_id={}", tg.send_text(chat, &user, text));
            }
            "group" => {
                let parts: Vec<&str> = rest.splitn(3, ' ').collect();
                let (Some(cid), Some(uid)) = (
                    parts.first().and_then(|s| num(s)),
                    parts.get(1).and_then(|s| num(s)),
                ) else {
                    eprintln!("usage: group <chat_id> <user_id> <text>");
                    continue;
                };
                let user = tg.user(uid, &format!("User{uid}"));
                let chat = tg.group_chat(cid, "Group");
                println!(
                    "message_id={}",
                    tg.send_text(chat, &user, parts.get(2).copied().unwrap_or(""))
                );
            }
            "press" => {
                let parts: Vec<&str> = rest.splitn(3, ' ').collect();
                let (Some(cid), Some(mid), Some(data)) = (
                    parts.first().and_then(|s| num(s)),
                    parts.get(1).and_then(|s| num(s)),
                    parts.get(2),
                ) else {
                    eprintln!("usage: press <chat_id> <message_id> <callback_data>");
                    continue;
                };
                let chat = bridge_testkit::telegram::ChatRef {
                    chat_id: cid,
                    thread_id: None,
                };
                println!(
                    "callback_query_id={}",
                    tg.press_button(chat, mid as i32, data)
                );
            }
            "sent" => {
                for s in tg.sent_all() {
                    println!("[{} #{}] {}", s.chat_id, s.message_id, s.text);
                }
            }
            "requests" => {
                for r in tg.all_requests() {
                    println!("{} chat={:?} -> {}", r.method, r.chat_id, r.status);
                }
            }
            "quit" | "exit" => break,
            "" => {}
            other => eprintln!("unknown command {other:?}"),
        }
    }
}
