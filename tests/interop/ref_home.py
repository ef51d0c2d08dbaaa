#!/usr/bin/env python3
"""Build a realistic CCCC_HOME with the reference daemon, and print a canonical view of any home.

    VENV/bin/python tests/interop/ref_home.py make HOME
        Start the reference cccc-pair 0.4.32 daemon on HOME (must be empty/new), build two groups
        with actors, messages, acks, replies, a mark-read, a >32000-byte message (spilled to a blob)
        and a group_settings_update, then shut the daemon down (shutdown op; every process of it
        confirmed gone). Prints one JSON line describing what was built (ids) on stdout.

    CCCC_HOME=HOME VENV/bin/python tests/interop/ref_home.py view [--out FILE]
        With a daemon (ours or the reference) already running on $CCCC_HOME, print a canonical JSON
        document (sorted keys, 2-space indent) of what a compatible daemon must reproduce exactly:
        groups (id,title,topic,state, scopes, default_send_to), actors (id,title,role,enabled,runner,
        runtime; roster order), per principal (every actor + user) the unread chat inbox (ids, limit 0)
        + the unread headless "info" notifies + cursor {event_id, ts}, every chat.message (summary) and
        the obligation status per chat.message per recipient (read/acked/replied/reply_required),
        computed here like the reference's get_obligation_status_batch from an events_stream replay
        (by=user, since_ts=epoch, kinds=[chat.message, chat.ack]) + the inbox cursors + actor_list.
        Nothing run-dependent (no nudges, no actor.activity, no pids, no wall-clock timestamps other
        than ledger event ts which come from the home itself).

    VENV/bin/python tests/interop/ref_home.py selfcheck HOME
        make HOME, then view it against the reference twice on one daemon and once more after a
        daemon restart; fails unless all three documents are identical.

Uses only the official SDK (cccc_sdk.CCCCClient public methods) for IPC.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ref_daemon import start_ref_daemon, RefDaemonError  # noqa: E402

from cccc_sdk import CCCCClient, DaemonAPIError  # noqa: E402

BIG_TEXT_BYTES = 40_000
EPOCH = "1970-01-01T00:00:00Z"


def die(msg: str) -> None:
    print(f"ref_home: FAIL {msg}", file=sys.stderr)
    sys.exit(1)


def parse_ts(ts: str) -> Optional[datetime]:
    s = str(ts or "").strip()
    if not s:
        return None
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


# --------------------------------------------------------------------------------------------
# make
# --------------------------------------------------------------------------------------------

def _ev(res: Dict[str, Any], key: str = "event") -> Dict[str, Any]:
    ev = res.get(key)
    if not isinstance(ev, dict) or not ev.get("id"):
        die(f"expected an event under {key!r}: {json.dumps(res)[:500]}")
    return ev


def build(c: CCCCClient, home: Path) -> Dict[str, Any]:
    out: Dict[str, Any] = {}

    # ---- group A: attached scope, 4 headless actors -------------------------------------
    ga = c.group_create(title="alpha", topic="interop home A")["group_id"]
    scope_dir = home / "_scopes" / "alpha-project"
    scope_dir.mkdir(parents=True, exist_ok=True)
    att = c.attach(path=str(scope_dir), group_id=ga)
    actors_a = [("lead", "Lead"), ("peer-a", "Peer A"), ("peer-b", "Peer B"), ("zoe", "Zoë 评审")]
    for aid, title in actors_a:
        r = c.actor_add(group_id=ga, actor_id=aid, title=title, runtime="custom", runner="headless")
        if r.get("actor", {}).get("id") != aid:
            die(f"actor_add {aid}: {r}")

    def send(gid: str, text: str, by: str = "user", **kw: Any) -> str:
        return _ev(c.send(group_id=gid, text=text, by=by, **kw))["id"]

    def reply(gid: str, reply_to: str, text: str, by: str, **kw: Any) -> Tuple[str, Optional[str]]:
        r = c.reply(group_id=gid, reply_to=reply_to, text=text, by=by, **kw)
        ack = r.get("ack_event")
        return _ev(r)["id"], (ack.get("id") if isinstance(ack, dict) else None)

    a: Dict[str, Any] = {}
    a["ask1"] = send(ga, "Please review the release checklist", to=["peer-a"], priority="attention",
                     reply_required=True)
    a["hello"] = send(ga, "Hello everyone, kickoff in 5", to=["@all"])
    a["ask2"] = send(ga, "Can you draft the changelog?", by="lead", to=["peer-b"], reply_required=True)
    a["peers_attn"] = send(ga, "Peers: freeze merges now", to=["@peers"], priority="attention")
    a["to_foreman_default"] = send(ga, "No explicit recipient (default_send_to=foreman)")
    a["ack1"] = _ev(c.chat_ack(group_id=ga, actor_id="peer-a", event_id=a["ask1"]))["id"]
    a["reply1"], _ = reply(ga, a["ask1"], "Reviewed, two nits filed", by="peer-a")
    a["reply2"], a["reply2_ack"] = reply(ga, a["ask2"], "Changelog drafted", by="peer-b")
    # One self mark-read (ack gesture on an attention message).
    mr = c.inbox_mark_read(group_id=ga, actor_id="zoe", event_id=a["peers_attn"], by="zoe")
    a["zoe_read"] = _ev(mr)["id"]
    a["zoe_read_ack"] = (mr.get("ack_event") or {}).get("id")
    a["ack_peer_b"] = _ev(c.chat_ack(group_id=ga, actor_id="peer-b", event_id=a["peers_attn"]))["id"]
    a["status_to_user"] = send(ga, "Status: release candidate is green", by="lead", to=["user"],
                               priority="attention")
    a["ack_user"] = _ev(c.chat_ack(group_id=ga, actor_id="user", event_id=a["status_to_user"], by="user"))["id"]
    big = ("The quick brown fox jumps over the lazy dog. 0123456789 äöü €\n" * 1000)
    big = big[: BIG_TEXT_BYTES]  # characters; > 32000 UTF-8 bytes for sure
    assert len(big.encode("utf-8")) > 32000
    a["big"] = send(ga, big, to=["lead"])
    a["open_ask"] = send(ga, "Peer B, please confirm the deploy window", by="peer-a", to=["peer-b"],
                         priority="attention", reply_required=True)
    a["mention"] = send(ga, "Zoë, can you look at the i18n strings? ✓", by="lead", to=["@zoe", "Peer A"])
    # Actor traffic that `user` sees too: @all, and @peers (quirk: user is treated as a peer), @user.
    a["lead_to_peers"] = send(ga, "Peers: sync at 15:00", by="lead", to=["@peers"])
    a["peer_b_to_all"] = send(ga, "FYI all: staging is down for 10 min", by="peer-b", to=["@all"])
    a["peer_b_to_user"] = send(ga, "User, please approve the budget", by="peer-b", to=["@user"],
                               priority="attention")
    out["alpha"] = {"group_id": ga, "scope_key": att.get("scope_key"), "scope_dir": str(scope_dir), "events": a}

    # ---- group B: no scope, default_send_to broadcast --------------------------------------
    gb = c.group_create(title="beta", topic="")["group_id"]
    b: Dict[str, Any] = {}
    for aid, title in (("lead", "Beta Lead"), ("peer-a", "")):
        r = c.actor_add(group_id=gb, actor_id=aid, title=title, runtime="custom", runner="headless")
        b[f"add_{aid}_running"] = r.get("running")
        if r.get("start_error"):
            b[f"add_{aid}_start_error"] = r.get("start_error")
    su = c.group_settings_update(group_id=gb, patch={"default_send_to": "broadcast"})
    b["settings_event"] = _ev(su)["id"]
    b["broadcast"] = send(gb, "No recipient => broadcast in beta")
    b["q"] = send(gb, "Question for the user", by="peer-a", to=["user"], reply_required=True)
    b["a"], _ = reply(gb, b["q"], "Answer from the user", by="user")
    b["foreman_only"] = send(gb, "Only for the foreman", to=["@foreman"], priority="attention")
    out["beta"] = {"group_id": gb, "events": b}
    return out


def cmd_make(home_arg: str) -> int:
    home = Path(home_arg).expanduser().resolve()
    if home == (Path.home() / ".cccc").resolve():
        die("refusing to build in ~/.cccc")
    if (home / "registry.json").exists() or (home / "groups").exists():
        die(f"{home} already holds a CCCC home; make needs a fresh directory")
    home.mkdir(parents=True, exist_ok=True)
    d = start_ref_daemon(home)
    try:
        c = CCCCClient(cccc_home=str(home), timeout_s=30.0)
        info = build(c, home)
        # Let asynchronous delivery side effects (headless notifies, nudges) settle before stopping.
        time.sleep(1.0)
    finally:
        d.stop()
    info["home"] = str(home)
    info["ok"] = True
    print(json.dumps(info, ensure_ascii=False, sort_keys=True))
    return 0


# --------------------------------------------------------------------------------------------
# view
# --------------------------------------------------------------------------------------------

def replay_events(c: CCCCClient, gid: str, first_timeout: float = 3.0, idle: float = 1.0,
                  max_total: float = 60.0) -> List[Dict[str, Any]]:
    """Full replay (chat.message + chat.ack) through events_stream since_ts=epoch, by=user.

    The SDK generator blocks without timeout after the handshake, so it runs in a daemon thread;
    the replay is considered complete after `idle` seconds without items (nothing else writes to
    these groups while `view` runs). The thread ends on the next item / when the process exits.
    """
    q: "queue.Queue[Any]" = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        gen = c.events_stream(group_id=gid, by="user", kinds={"chat.message", "chat.ack"}, since_ts=EPOCH)
        try:
            for item in gen:
                q.put(item)
                if stop.is_set():
                    break
        except BaseException as e:  # noqa: BLE001
            q.put(e)
        finally:
            gen.close()
            q.put(None)

    threading.Thread(target=run, daemon=True).start()
    events: List[Dict[str, Any]] = []
    start = time.time()
    wait = first_timeout
    while time.time() - start < max_total:
        try:
            item = q.get(timeout=wait)
        except queue.Empty:
            break
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        wait = idle
        if isinstance(item, dict) and item.get("t") == "event" and isinstance(item.get("event"), dict):
            ev = item["event"]
            if ev.get("kind") in ("chat.message", "chat.ack"):
                events.append(ev)
    stop.set()
    return events


def is_message_for(actor_id: str, role: str, ev: Dict[str, Any]) -> bool:
    """Reference is_message_for_actor for chat.message and a non-internal actor."""
    to = [str(x) for x in (ev.get("data") or {}).get("to") or [] if isinstance(x, str) and x.strip()]
    if not to or "@all" in to or actor_id in to:
        return True
    if role == "peer" and "@peers" in to:
        return True
    if role == "foreman" and "@foreman" in to:
        return True
    return False


def group_view(c: CCCCClient, gid: str) -> Dict[str, Any]:
    doc = c.group_show(gid).get("group") or {}
    actors_raw = c.actor_list(gid).get("actors") or []
    actors = [
        {k: a.get(k) for k in ("id", "title", "role", "enabled", "runner", "runtime")}
        for a in actors_raw if isinstance(a, dict)
    ]
    created = {a.get("id"): parse_ts(a.get("created_at")) for a in actors_raw if isinstance(a, dict)}
    roles = {a["id"]: a["role"] for a in actors}

    principals = [a["id"] for a in actors] + ["user"]
    inbox: Dict[str, Any] = {}
    cursors: Dict[str, Optional[datetime]] = {}
    chat_inbox_ids = set()
    for pid in principals:
        chat = c.inbox_list(group_id=gid, actor_id=pid, by="user", limit=0, kind_filter="chat")
        notes = c.inbox_list(group_id=gid, actor_id=pid, by="user", limit=0, kind_filter="notify")
        cur = chat.get("cursor") or {}
        cursors[pid] = parse_ts(cur.get("ts") or "")
        chat_ids = [m.get("id") for m in chat.get("messages") or []]
        chat_inbox_ids.update(chat_ids)
        inbox[pid] = {
            "cursor": {"event_id": cur.get("event_id", None), "ts": cur.get("ts", None)},
            "unread_chat": chat_ids,
            # Only the per-message headless delivery notifies (kind "info"); nudges are timer-driven.
            "unread_info_notify": [
                {"id": m.get("id"), "event_id": ((m.get("data") or {}).get("context") or {}).get("event_id"),
                 "title": (m.get("data") or {}).get("title"), "priority": (m.get("data") or {}).get("priority")}
                for m in notes.get("messages") or []
                if (m.get("data") or {}).get("kind") == "info"
            ],
        }

    events = replay_events(c, gid)
    msgs = [e for e in events if e.get("kind") == "chat.message"]
    ids = [e.get("id") for e in msgs]
    missing = sorted(chat_inbox_ids - set(ids))
    if missing:
        die(f"group {gid}: events_stream replay is missing inbox messages {missing} (replay incomplete?)")
    acks: Dict[str, set] = {}
    for e in events:
        if e.get("kind") == "chat.ack":
            d = e.get("data") or {}
            acks.setdefault(str(d.get("event_id") or ""), set()).add(str(d.get("actor_id") or ""))
    replies: Dict[str, set] = {}
    for e in msgs:
        rt = str((e.get("data") or {}).get("reply_to") or "").strip()
        if rt:
            replies.setdefault(rt, set()).add(str(e.get("by") or ""))

    messages = []
    obligations: Dict[str, Dict[str, Any]] = {}
    for e in msgs:
        d = e.get("data") or {}
        text = d.get("text") or ""
        messages.append({
            "id": e.get("id"),
            "ts": e.get("ts"),
            "by": e.get("by"),
            "to": d.get("to"),
            "priority": d.get("priority"),
            "reply_required": d.get("reply_required"),
            "reply_to": d.get("reply_to"),
            "quote_text": d.get("quote_text"),
            "sender_title": d.get("sender_title"),
            "scope_key": e.get("scope_key"),
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "attachments": [
                {k: att.get(k) for k in ("kind", "path", "bytes", "sha256")}
                for att in d.get("attachments") or [] if isinstance(att, dict)
            ],
        })
        if str(d.get("dst_group_id") or "").strip():
            continue
        ev_dt = parse_ts(e.get("ts"))
        if ev_dt is None:
            continue
        by = str(e.get("by") or "")
        to_set = {str(x).strip() for x in d.get("to") or [] if str(x).strip()}
        recipients = []
        for a in actors:
            aid = a["id"]
            if aid == by:
                continue
            cdt = created.get(aid)
            if cdt is not None and cdt > ev_dt:
                continue
            if is_message_for(aid, roles.get(aid, "peer"), e):
                recipients.append(aid)
        if by != "user" and ("user" in to_set or "@user" in to_set):
            recipients.append("user")
        status = {}
        for rid in recipients:
            cur = cursors.get(rid)
            read = bool(cur is not None and cur >= ev_dt)
            replied = rid in replies.get(e["id"], set())
            acked = replied or rid in acks.get(e["id"], set()) or (d.get("priority") == "attention" and read)
            status[rid] = {"read": read, "acked": acked, "replied": replied,
                           "reply_required": d.get("reply_required") is True}
        obligations[e["id"]] = status

    messaging = doc.get("messaging") if isinstance(doc.get("messaging"), dict) else {}
    return {
        "group_id": gid,
        "title": doc.get("title"),
        "topic": doc.get("topic"),
        "state": doc.get("state"),
        "active_scope_key": doc.get("active_scope_key"),
        "scopes": [
            {k: s.get(k) for k in ("scope_key", "url", "label", "git_remote")}
            for s in doc.get("scopes") or [] if isinstance(s, dict)
        ],
        "default_send_to": messaging.get("default_send_to", "foreman"),
        "actors": actors,
        "inbox": inbox,
        "messages": messages,
        "acks": {k: sorted(v) for k, v in sorted(acks.items())},
        "obligations": obligations,
    }


def build_view(c: CCCCClient) -> Dict[str, Any]:
    gl = c.groups().get("groups") or []
    groups = sorted((g for g in gl if isinstance(g, dict)), key=lambda g: str(g.get("group_id")))
    out = {"v": 1, "groups": []}
    for g in groups:
        gv = group_view(c, str(g["group_id"]))
        # The `groups` listing must agree with group_show.
        for k in ("title", "topic", "state"):
            if g.get(k) != gv[k]:
                die(f"groups[{g['group_id']}].{k}={g.get(k)!r} but group_show says {gv[k]!r}")
        out["groups"].append(gv)
    return out


def dump(doc: Dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def cmd_view(argv: List[str]) -> int:
    if not os.environ.get("CCCC_HOME", "").strip():
        die("CCCC_HOME must be set")
    c = CCCCClient(timeout_s=30.0)
    text = dump(build_view(c))
    if argv[:1] == ["--out"] and len(argv) > 1:
        Path(argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_selfcheck(home_arg: str) -> int:
    home = Path(home_arg).expanduser().resolve()
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # the make summary goes to stderr; stdout gets only the view
    try:
        cmd_make(str(home))
    finally:
        sys.stdout = real_stdout
    views = []
    for restart in (False, True):
        d = start_ref_daemon(home)
        try:
            c = CCCCClient(cccc_home=str(home), timeout_s=30.0)
            views.append(dump(build_view(c)))
            if not restart:
                time.sleep(5.0)  # let timers (nudges, activity) fire; must not change the view
                views.append(dump(build_view(c)))
        finally:
            d.stop()
    if len(set(views)) != 1:
        for i, v in enumerate(views):
            (home.parent / f"{home.name}.view{i}.json").write_text(v, encoding="utf-8")
        die(f"views differ; written to {home.parent}/{home.name}.view*.json")
    sys.stdout.write(views[0])
    print(f"ref_home: selfcheck OK ({len(views)} identical views)", file=sys.stderr)
    return 0


def main(argv: List[str]) -> int:
    if not argv or argv[0] not in ("make", "view", "selfcheck"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "view":
        return cmd_view(argv[1:])
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "make":
        return cmd_make(argv[1])
    return cmd_selfcheck(argv[1])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DaemonAPIError as e:
        die(f"daemon error {e.code}: {e.message} {e.details or ''}")
    except RefDaemonError as e:
        die(str(e))
