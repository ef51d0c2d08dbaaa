//! The MCP server against a real in-process daemon: group + two headless actors, driven through
//! an in-memory transport with rmcp's client, and once over real stdio through a child process.

use cccc_core::home::Home;
use cccc_ipc::Client;
use cccc_mcp::Identity;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---- daemon fixture ---------------------------------------------------------------------------

struct Daemon {
    dir: tempfile::TempDir,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let h = home.clone();
        let thread = std::thread::spawn(move || cccc_daemon::run_blocking(Home::at(h)).expect("daemon"));
        let d = Daemon { dir, thread: Some(thread) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if d.home().join("daemon/ccccd.sock").exists() && d.client().with_timeout(Duration::from_secs(1)).call("ping", json!({})).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up");
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn client(&self) -> Client {
        Client::for_home(&self.home())
    }

    fn call(&self, op: &str, args: Value) -> Value {
        self.client().call(op, args).unwrap_or_else(|e| panic!("{op}: {e}"))
    }

    /// A group with a project dir and two headless actors: `lead` (foreman) and `peer-a`.
    fn group(&self) -> String {
        let gid = self.call("group_create", json!({"title": "mcp-test", "by": "user"}))["group_id"].as_str().unwrap().to_string();
        let project = self.dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        self.call("attach", json!({"path": project.to_str().unwrap(), "group_id": gid, "by": "user"}));
        for (id, title) in [("lead", "Lead"), ("peer-a", "Peer A")] {
            let r = self.call("actor_add", json!({"group_id": gid, "actor_id": id, "title": title, "runtime": "custom", "runner": "headless", "by": "user"}));
            assert_eq!(r["actor"]["id"], id);
        }
        gid
    }

    fn send(&self, gid: &str, args: Value) -> String {
        let mut a = args.as_object().unwrap().clone();
        a.insert("group_id".into(), json!(gid));
        a.entry("by").or_insert(json!("user"));
        self.call("send", Value::Object(a))["event"]["id"].as_str().unwrap().to_string()
    }

    fn ledger(&self, gid: &str) -> Vec<Value> {
        ledger_at(&self.home(), gid)
    }

    fn identity(&self, gid: &str, actor: &str) -> Identity {
        Identity::new(Home::at(self.home()), gid, actor)
    }
}

fn ledger_at(home: &Path, gid: &str) -> Vec<Value> {
    std::fs::read_to_string(home.join("groups").join(gid).join("ledger.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.client().call("shutdown", json!({}));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- MCP client helpers -----------------------------------------------------------------------

#[derive(Clone, Default)]
struct TestClient;

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }
}

type Mcp = RunningService<RoleClient, TestClient>;

/// Start the server on one end of an in-memory duplex and connect an rmcp client to the other.
async fn connect(identity: Identity) -> Mcp {
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move { cccc_mcp::serve(identity, server_io).await });
    TestClient.serve(client_io).await.expect("client init")
}

/// Call a tool: `(is_error, all text content joined)`.
async fn tool(mcp: &Mcp, name: &str, args: Value) -> (bool, String) {
    let mut params = CallToolRequestParams::new(name.to_string());
    if let Value::Object(m) = args {
        params = params.with_arguments(m);
    }
    let r = mcp.call_tool(params).await.unwrap_or_else(|e| panic!("{name}: protocol error {e}"));
    let text = r.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.as_str()).collect::<Vec<_>>().join("\n");
    (r.is_error == Some(true), text)
}

async fn ok(mcp: &Mcp, name: &str, args: Value) -> String {
    let (err, text) = tool(mcp, name, args).await;
    assert!(!err, "{name} failed: {text}");
    text
}

async fn fails(mcp: &Mcp, name: &str, args: Value) -> String {
    let (err, text) = tool(mcp, name, args).await;
    assert!(err, "{name} should have failed: {text}");
    text
}

const TOOLS: [&str; 8] =
    ["cccc_message_send", "cccc_message_reply", "cccc_inbox_list", "cccc_inbox_mark_read", "cccc_ack", "cccc_group_status", "cccc_bootstrap", "cccc_help"];

// ---- tests --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_with_precise_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mcp = connect(Identity::new(Home::at(dir.path()), "g_x", "peer-a")).await;
    let info = mcp.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().map(|i| i.name.as_str()), Some("cccc"));
    let tools = mcp.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in TOOLS {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert_eq!(tools.len(), TOOLS.len());
    let schema = |name: &str| Value::Object((*tools.iter().find(|t| t.name == name).unwrap().input_schema).clone());
    // Flat schemas: optional fields are typed properties with defaults, enums are inline.
    for t in &tools {
        let sch = Value::Object((*t.input_schema).clone()).to_string();
        assert!(!sch.contains("null") && !sch.contains("$ref") && !sch.contains("anyOf"), "{}: {sch}", t.name);
    }
    let send = schema("cccc_message_send");
    assert_eq!(send["type"], "object");
    assert_eq!(send["required"], json!(["text"]));
    assert_eq!(send["properties"]["priority"]["enum"], json!(["normal", "attention"]));
    assert_eq!(send["properties"]["priority"]["default"], "normal");
    assert_eq!(send["properties"]["reply_required"]["type"], "boolean");
    assert_eq!(send["properties"]["to"]["type"], "array");
    assert_eq!(send["properties"]["to"]["items"]["type"], "string");
    let reply = schema("cccc_message_reply");
    let mut req: Vec<String> = serde_json::from_value(reply["required"].clone()).unwrap();
    req.sort();
    assert_eq!(req, ["event_id", "text"]);
    let inbox = schema("cccc_inbox_list");
    assert_eq!(inbox["properties"]["kind_filter"]["enum"], json!(["all", "chat", "notify"]));
    assert_eq!(inbox["properties"]["limit"]["type"], "integer");
    assert_eq!(inbox["properties"]["limit"]["default"], 20);
    assert_eq!(inbox["properties"]["limit"]["maximum"], 200);
    assert_eq!(schema("cccc_ack")["required"], json!(["event_id"]));
    let mark = schema("cccc_inbox_mark_read");
    assert_eq!(mark["properties"]["event_id"]["type"], "string");
    assert!(mark.get("required").is_none_or(|r| r.as_array().unwrap().is_empty()));
    for t in &tools {
        assert!(t.description.as_deref().unwrap_or("").len() > 40, "{} needs a helpful description", t.name);
    }
    mcp.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_lists_replies_and_acks() {
    let d = Daemon::start();
    let gid = d.group();
    let ask = d.send(&gid, json!({"text": "Please review the release checklist", "to": ["peer-a"], "priority": "attention", "reply_required": true}));

    let peer = connect(d.identity(&gid, "peer-a")).await;

    // Bootstrap: identity, foreman, unread count and the open ask.
    let boot = ok(&peer, "cccc_bootstrap", json!({})).await;
    assert!(boot.contains("You are `peer-a` (role: peer"), "{boot}");
    assert!(boot.contains("Foreman: lead"), "{boot}");
    assert!(boot.contains("mcp-test") && boot.contains(&gid), "{boot}");
    assert!(boot.contains("Unread: ") && !boot.contains("Unread: 0"), "{boot}");
    assert!(boot.contains(&ask) && boot.contains("REPLY REQUIRED"), "{boot}");

    // The inbox shows the ask with its markers, plus the raw JSON.
    let inbox = ok(&peer, "cccc_inbox_list", json!({})).await;
    assert!(inbox.contains(&ask), "{inbox}");
    assert!(inbox.contains("user → peer-a | IMPORTANT | REPLY REQUIRED"), "{inbox}");
    assert!(inbox.contains("Please review the release checklist"), "{inbox}");
    assert!(inbox.contains("raw inbox_list result:") && inbox.contains("\"messages\""), "{inbox}");
    let chat_only = ok(&peer, "cccc_inbox_list", json!({"kind_filter": "chat", "limit": 5})).await;
    assert_eq!(ok(&peer, "cccc_inbox_list", json!({"kind_filter": null, "limit": null})).await, inbox);
    assert!(chat_only.contains("1 unread") && !chat_only.contains("SYSTEM"), "{chat_only}");

    // Reply closes the ask and acks the attention message.
    let r = ok(&peer, "cccc_message_reply", json!({"event_id": ask, "text": "Reviewed: all good"})).await;
    assert!(r.contains("Reply sent") && r.contains(&format!("reply to {ask}")) && r.contains("acknowledged"), "{r}");
    let ledger = d.ledger(&gid);
    let reply = ledger
        .iter()
        .find(|e| e["kind"] == "chat.message" && e["by"] == "peer-a" && e["data"]["reply_to"] == json!(ask))
        .expect("reply in ledger");
    assert_eq!(reply["data"]["to"], json!(["user"]));
    assert_eq!(reply["data"]["text"], "Reviewed: all good");
    assert!(ledger.iter().any(|e| e["kind"] == "chat.ack" && e["by"] == "peer-a" && e["data"] == json!({"actor_id": "peer-a", "event_id": ask})));

    // Nothing owed any more.
    let status = ok(&peer, "cccc_group_status", json!({})).await;
    assert!(status.contains("You owe nothing"), "{status}");

    // cccc_ack: first acks, second says already.
    let important = d.send(&gid, json!({"text": "Heads up: freeze at 5pm", "to": ["@all"], "priority": "attention"}));
    let a1 = ok(&peer, "cccc_ack", json!({"event_id": important})).await;
    assert!(a1.starts_with("Acknowledged") && a1.contains(&important), "{a1}");
    let a2 = ok(&peer, "cccc_ack", json!({"event_id": important})).await;
    assert!(a2.contains("Already acknowledged"), "{a2}");
    let acks = d.ledger(&gid).iter().filter(|e| e["kind"] == "chat.ack" && e["data"]["event_id"] == json!(important)).count();
    assert_eq!(acks, 1);

    // Errors from the daemon reach the agent as tool errors with the daemon's code.
    let e = fails(&peer, "cccc_message_reply", json!({"event_id": "ffffffffffffffffffffffffffffffff", "text": "?"})).await;
    assert!(e.starts_with("event_not_found"), "{e}");
    let for_lead = d.send(&gid, json!({"text": "lead only", "to": ["lead"], "priority": "attention"}));
    let e = fails(&peer, "cccc_ack", json!({"event_id": for_lead})).await;
    assert!(e.starts_with("event_not_for_actor"), "{e}");
    let e = fails(&peer, "cccc_ack", json!({"event_id": d.send(&gid, json!({"text": "plain", "to": ["peer-a"]}))})).await;
    assert!(e.starts_with("not_an_attention_message"), "{e}");

    // Mark read: one event (self-marking an attention message acks it), then everything.
    let third = d.send(&gid, json!({"text": "another important one", "to": ["peer-a"], "priority": "attention"}));
    let m = ok(&peer, "cccc_inbox_mark_read", json!({"event_id": third})).await;
    assert!(m.contains(&format!("Marked read up to {third}")) && m.contains("acknowledged"), "{m}");
    assert!(d.ledger(&gid).iter().any(|e| e["kind"] == "chat.ack" && e["data"] == json!({"actor_id": "peer-a", "event_id": third})));
    let last = d.send(&gid, json!({"text": "one more", "to": ["peer-a"]}));
    let m = ok(&peer, "cccc_inbox_mark_read", json!({})).await;
    assert!(m.starts_with("Marked everything read"), "{m}");
    let inbox = ok(&peer, "cccc_inbox_list", json!({})).await;
    assert!(inbox.contains("nothing unread") && !inbox.contains(&last), "{inbox}");
    let m = ok(&peer, "cccc_inbox_mark_read", json!({})).await;
    assert!(m.contains("Nothing unread"), "{m}");

    // A new message from the peer: default recipient is the foreman; recorded with by = peer-a.
    let s = ok(&peer, "cccc_message_send", json!({"text": "status: done", "reply_required": true})).await;
    assert!(s.contains("Message sent") && s.contains("to @foreman") && s.contains("REPLY REQUIRED"), "{s}");
    let s = ok(&peer, "cccc_message_send", json!({"text": "fyi", "to": "user", "priority": "normal"})).await;
    assert!(s.contains("to user"), "{s}");
    let ledger = d.ledger(&gid);
    let sent = ledger.iter().find(|e| e["kind"] == "chat.message" && e["data"]["text"] == "status: done").unwrap();
    assert_eq!(sent["by"], "peer-a");
    assert_eq!(sent["data"]["to"], json!(["@foreman"]));
    assert_eq!(sent["data"]["reply_required"], true);
    let e = fails(&peer, "cccc_message_send", json!({"text": "x", "to": ["@everyone"]})).await;
    assert!(e.starts_with("invalid_recipient"), "{e}");

    // The foreman sees the peer's open ask as its obligation.
    let lead = connect(d.identity(&gid, "lead")).await;
    let st = ok(&lead, "cccc_group_status", json!({})).await;
    assert!(st.contains("lead [foreman] \"Lead\" runtime=custom runner=headless running"), "{st}");
    assert!(st.contains("peer-a [peer] \"Peer A\""), "{st}");
    // lead also owes acks for the two attention messages it was sent ("@all" and "lead only").
    assert!(st.contains("You owe (3)") && st.contains("from peer-a") && st.contains("REPLY REQUIRED"), "{st}");
    let boot = ok(&lead, "cccc_bootstrap", json!({})).await;
    assert!(boot.contains("(role: foreman") && boot.contains("Foreman: you"), "{boot}");
    // …and the peer sees it as waiting on others.
    let st = ok(&peer, "cccc_group_status", json!({})).await;
    assert!(st.contains("Waiting on others (1)") && st.contains("→ lead: REPLY REQUIRED"), "{st}");

    peer.cancel().await.unwrap();
    lead.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_identity_and_dead_daemon_are_tool_errors() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let mcp = connect(Identity { home: home.clone(), group_id: Some("g_1".into()), actor_id: None, home_from_env: true }).await;
    for t in ["cccc_inbox_list", "cccc_bootstrap", "cccc_group_status", "cccc_inbox_mark_read"] {
        let e = fails(&mcp, t, json!({})).await;
        assert!(e.starts_with("missing_identity: environment variable CCCC_ACTOR_ID not set:"), "{t}: {e}");
    }
    let e = fails(&mcp, "cccc_message_send", json!({"text": "hi"})).await;
    assert!(e.contains("CCCC_ACTOR_ID"), "{e}");
    let help = ok(&mcp, "cccc_help", json!({})).await;
    assert!(help.contains("cccc_message_reply") && help.contains("WARNING") && help.contains("CCCC_ACTOR_ID"), "{help}");
    // Bad arguments are tool errors naming the field, not crashes: the server keeps serving.
    let e = fails(&mcp, "cccc_ack", json!({})).await;
    assert!(e.contains("missing field `event_id`"), "{e}");
    let e = fails(&mcp, "cccc_message_send", json!({"text": "x", "priority": "urgent"})).await;
    assert!(e.contains("urgent"), "{e}");
    mcp.cancel().await.unwrap();

    let mcp = connect(Identity { home: home.clone(), group_id: None, actor_id: None, home_from_env: false }).await;
    let e = fails(&mcp, "cccc_ack", json!({"event_id": "abc"})).await;
    assert!(e.starts_with("missing_identity: environment variable CCCC_GROUP_ID and CCCC_ACTOR_ID not set:"), "{e}");
    mcp.cancel().await.unwrap();

    // No daemon in this home.
    let mcp = connect(Identity::new(home, "g_1", "peer-a")).await;
    let e = fails(&mcp, "cccc_inbox_list", json!({})).await;
    assert!(e.starts_with("daemon_unavailable") && e.contains("Is it running?"), "{e}");
    let e = fails(&mcp, "cccc_group_status", json!({})).await;
    assert!(e.starts_with("daemon_unavailable"), "{e}");
    // Still alive after the errors.
    ok(&mcp, "cccc_help", json!({})).await;
    mcp.cancel().await.unwrap();
}

// ---- real stdio ---------------------------------------------------------------------------------

/// Child side of `run_stdio_over_pipes`: the test binary re-executed with `CCCC_MCP_STDIO_CHILD`
/// runs `run_stdio` and exits when stdin closes.
#[test]
fn stdio_child() {
    if std::env::var_os("CCCC_MCP_STDIO_CHILD").is_none() {
        return;
    }
    cccc_mcp::run_stdio(Home::resolve()).expect("run_stdio");
}

#[test]
fn run_stdio_over_pipes() {
    let d = Daemon::start();
    let gid = d.group();
    let ask = d.send(&gid, json!({"text": "stdio ask", "to": ["peer-a"], "reply_required": true}));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stdio_child", "--nocapture", "--test-threads=1", "-q"])
        .env("CCCC_MCP_STDIO_CHILD", "1")
        .env("CCCC_HOME", d.home())
        .env("CCCC_GROUP_ID", &gid)
        .env("CCCC_ACTOR_ID", "peer-a")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Read stdout on a thread so a silent child fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let send = |stdin: &mut std::process::ChildStdin, v: Value| {
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    };
    // libtest writes its own text to stdout too ("running 1 test", "test stdio_child ... " with
    // no newline before the test runs): a response is the JSON object from the first '{'.
    let recv = |child: &mut std::process::Child, id: u64| -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    panic!("no JSON-RPC response {id} from the child: {e}");
                }
            };
            if let Some(i) = line.find('{')
                && let Ok(v) = serde_json::from_str::<Value>(&line[i..])
                && v["id"] == json!(id)
            {
                return v;
            }
        }
    };
    send(&mut stdin, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}));
    let init = recv(&mut child, 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "cccc", "{init}");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    send(&mut stdin, json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(&mut stdin, json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let list = recv(&mut child, 2);
    let names: Vec<&str> = list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), TOOLS.len(), "{names:?}");
    send(&mut stdin, json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "cccc_message_reply", "arguments": {"event_id": ask, "text": "via stdio"}}}));
    let r = recv(&mut child, 3);
    assert_eq!(r["result"]["isError"], false, "{r}");
    send(&mut stdin, json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "cccc_ack", "arguments": {"event_id": "0000"}}}));
    let r = recv(&mut child, 4);
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().starts_with("event_not_found"), "{r}");
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("run_stdio did not exit on EOF");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(d.ledger(&gid).iter().any(|e| e["by"] == "peer-a" && e["data"]["reply_to"] == json!(ask) && e["data"]["text"] == "via stdio"));
}
