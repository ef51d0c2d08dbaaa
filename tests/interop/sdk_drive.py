#!/usr/bin/env python3
"""Drive a running CCCC daemon through the official Python SDK (cccc-sdk==0.4.32).

Usage:  CCCC_HOME=/tmp/some-home VENV/bin/python tests/interop/sdk_drive.py [--timeout S]

A daemon (ours or the reference cccc-pair 0.4.32) must already be running on $CCCC_HOME.
Only the SDK's public API is used (CCCCClient methods; no raw ops are needed for this scenario).
On success prints ONE JSON line {"ok": true, ...} and exits 0; on any failure prints
`sdk_drive: FAIL [step] ...` to stderr and exits 1.

Scenario: create group, attach a temp dir, add headless actors lead (foreman) + peer-a,
user -> peer-a attention+reply_required ask, peer-a inbox has it (+ the headless "Need reply"
system.notify), ack as peer-a, repeated ack => already, reply from peer-a (reply_to = ask id,
to = [user]), user inbox has the reply, events_stream: record an event id, close, send two
messages, reopen with since_event_id => both replayed in order, then a live event arrives;
an actor-view stream (by=peer-a) only sees what is addressed to peer-a.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

try:
    from cccc_sdk import CCCCClient, DaemonAPIError, CCCCSDKError
except ImportError as e:  # pragma: no cover
    print(f"sdk_drive: FAIL [import] cccc_sdk not importable ({e}); run with the interop venv python", file=sys.stderr)
    sys.exit(1)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
GID = re.compile(r"^g_[0-9a-f]{12}$")
SKEY = re.compile(r"^s_[0-9a-f]{12}$")
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


class Fail(Exception):
    pass


STEP = "init"
CHECKS = 0


def step(name: str) -> None:
    global STEP
    STEP = name


def check(cond: bool, msg: str, *ctx: Any) -> None:
    global CHECKS
    CHECKS += 1
    if not cond:
        extra = ""
        if ctx:
            extra = " | " + " | ".join(json.dumps(c, ensure_ascii=False, default=str)[:1500] for c in ctx)
        raise Fail(msg + extra)


def check_event(ev: Any, kind: str, by: Optional[str] = None) -> Dict[str, Any]:
    check(isinstance(ev, dict), f"expected a {kind} event object", ev)
    check(HEX32.match(str(ev.get("id") or "")) is not None, "event id must be 32 lowercase hex", ev)
    check(ev.get("kind") == kind, f"expected kind {kind}", ev)
    check(TS.match(str(ev.get("ts") or "")) is not None, "event ts must be RFC3339 UTC with Z", ev)
    check(isinstance(ev.get("data"), dict), "event data must be an object", ev)
    if by is not None:
        check(ev.get("by") == by, f"expected by={by}", ev)
    return ev


class StreamReader:
    """Consumes CCCCClient.events_stream() in a background thread and queues the items.

    The SDK generator blocks in readline() with no timeout after the handshake, so it cannot be
    interrupted from outside; close() sets a flag and the generator is closed (socket closed by the
    SDK's finally-block) when the next item arrives or the daemon closes the stream.
    """

    def __init__(self, client: CCCCClient, **kwargs: Any) -> None:
        self.q: "queue.Queue[Any]" = queue.Queue()
        self.items: List[Dict[str, Any]] = []
        self._stop = threading.Event()
        self._client = client
        self._kwargs = kwargs
        self.error: Optional[BaseException] = None
        self.ended = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        gen = None
        try:
            gen = self._client.events_stream(**self._kwargs)
            for item in gen:
                self.q.put(item)
                if self._stop.is_set():
                    break
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.q.put(e)
        finally:
            if gen is not None:
                try:
                    gen.close()
                except Exception:
                    pass
            self.ended.set()

    def next_item(self, timeout: float) -> Optional[Dict[str, Any]]:
        try:
            item = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        check(isinstance(item, dict), "stream item must be a JSON object", item)
        check(item.get("t") in ("event", "heartbeat"), "stream item t must be event|heartbeat", item)
        if item.get("t") == "event":
            check(isinstance(item.get("event"), dict), "stream event item must carry an event object", item)
        self.items.append(item)
        return item

    def wait_chat(self, want_ids: List[str], timeout: float) -> List[str]:
        """Collect chat.message ids (in arrival order) until all want_ids were seen."""
        seen: List[str] = []
        deadline = time.time() + timeout
        while not set(want_ids) <= set(seen):
            left = deadline - time.time()
            if left <= 0:
                break
            item = self.next_item(min(left, 0.5))
            if item is None or item.get("t") != "event":
                continue
            ev = item["event"]
            if ev.get("kind") == "chat.message":
                seen.append(str(ev.get("id")))
        return seen

    def close(self) -> None:
        self._stop.set()


def main() -> int:
    timeout = 10.0
    args = sys.argv[1:]
    if args[:1] == ["--timeout"] and len(args) > 1:
        timeout = float(args[1])
    home = os.environ.get("CCCC_HOME", "").strip()
    if not home:
        raise Fail("CCCC_HOME must be set (never run against ~/.cccc)")

    c = CCCCClient(timeout_s=30.0)
    summary: Dict[str, Any] = {"ok": True, "endpoint": c.endpoint.transport}

    step("ping")
    ping = c.ping()
    check(isinstance(ping.get("version"), str) and ping.get("version"), "ping.version", ping)
    check(isinstance(ping.get("pid"), int), "ping.pid must be an int", ping)
    summary["daemon_version"] = ping.get("version")
    # assert_compatible: ipc_v >= 1, capabilities.events_stream truthy; ops probed with {} args must
    # not answer unknown_op (only ops that are harmless with empty args are probed).
    step("assert_compatible")
    c.assert_compatible(
        require_ipc_v=1,
        require_capabilities={"events_stream": True},
        require_ops=["groups", "group_show", "actor_list", "actor_add", "send", "reply", "chat_ack",
                     "inbox_list", "inbox_mark_read", "inbox_mark_all_read"],
    )

    step("group_create")
    g = c.group_create(title="sdk-drive", topic="interop")
    gid = str(g.get("group_id") or "")
    check(GID.match(gid) is not None, "group_create.group_id must be g_ + 12 hex", g)
    check(g.get("title") == "sdk-drive", "group_create.title", g)
    ev = check_event(g.get("event"), "group.create")
    check(ev.get("group_id") == gid and ev["data"].get("title") == "sdk-drive"
          and ev["data"].get("topic") == "interop", "group.create event data", ev)
    summary["group_id"] = gid

    step("groups/group_show")
    gl = c.groups().get("groups")
    check(isinstance(gl, list) and any(isinstance(x, dict) and x.get("group_id") == gid for x in gl),
          "groups lists the new group", gl)
    doc = c.group_show(gid).get("group") or {}
    check(doc.get("group_id") == gid and doc.get("title") == "sdk-drive" and doc.get("topic") == "interop",
          "group_show returns the group doc", doc)
    check(doc.get("state") == "active", "new group state active", doc)

    scope_dir = tempfile.mkdtemp(prefix="sdk-drive-scope-")
    try:
        step("attach")
        a = c.attach(path=scope_dir, group_id=gid)
        check(a.get("group_id") == gid, "attach.group_id", a)
        check(SKEY.match(str(a.get("scope_key") or "")) is not None, "attach.scope_key must be s_ + 12 hex", a)
        doc = c.group_show(gid).get("group") or {}
        check(doc.get("active_scope_key") == a["scope_key"], "attach sets active_scope_key", doc)

        step("actor_add")
        roles = {}
        for aid, title in (("lead", "Lead"), ("peer-a", "")):
            r = c.actor_add(group_id=gid, actor_id=aid, title=title, runtime="custom", runner="headless")
            act = r.get("actor") or {}
            check(act.get("id") == aid, f"actor_add({aid}).actor.id", r)
            check(act.get("runner") == "headless" and act.get("runtime") == "custom", "actor runner/runtime", act)
            check(r.get("running") is True, f"headless custom actor {aid} must be running", r)
            check_event(r.get("event"), "actor.add")
            roles[aid] = act.get("role")
        check(roles == {"lead": "foreman", "peer-a": "peer"}, "first actor is foreman, second peer", roles)
        al = c.actor_list(gid).get("actors") or []
        check([x.get("id") for x in al] == ["lead", "peer-a"], "actor_list order", al)
        check([x.get("role") for x in al] == ["foreman", "peer"], "actor_list roles", al)
        check(all(x.get("enabled") is True for x in al), "actors enabled", al)

        step("send ask")
        s = c.send(group_id=gid, text="Please review the release checklist", to=["peer-a"],
                   priority="attention", reply_required=True)
        ask = check_event(s.get("event"), "chat.message", by="user")
        ask_id = ask["id"]
        d = ask["data"]
        check(d.get("to") == ["peer-a"] and d.get("priority") == "attention" and d.get("reply_required") is True
              and d.get("reply_to") is None and d.get("text") == "Please review the release checklist",
              "ask data", ask)

        step("inbox peer-a")
        ib = c.inbox_list(group_id=gid, actor_id="peer-a", by="peer-a", limit=0)
        msgs = ib.get("messages") or []
        ids = [m.get("id") for m in msgs]
        check(ask_id in ids, "peer-a inbox contains the ask", ib)
        check(all(m.get("kind") in ("chat.message", "system.notify") for m in msgs), "inbox kinds", ids)
        # Headless actors get a system.notify per chat message (spec §5.3).
        notes = [m for m in msgs if m.get("kind") == "system.notify"
                 and (m.get("data") or {}).get("target_actor_id") == "peer-a"
                 and ((m.get("data") or {}).get("context") or {}).get("event_id") == ask_id]
        check(len(notes) == 1, "peer-a has exactly one system.notify for the ask", msgs)
        check(notes[0]["data"].get("title") == "Need reply" and notes[0]["data"].get("priority") == "urgent",
              "headless notify for attention+reply_required is 'Need reply'/urgent", notes[0])
        cur = ib.get("cursor") or {}
        check(set(cur) >= {"event_id", "ts"}, "inbox cursor has event_id/ts", ib.get("cursor"))
        chat_only = c.inbox_list(group_id=gid, actor_id="peer-a", by="peer-a", limit=0, kind_filter="chat")
        check([m.get("id") for m in chat_only.get("messages") or []] == [ask_id], "chat inbox of peer-a == [ask]",
              chat_only)

        step("ack")
        k = c.chat_ack(group_id=gid, actor_id="peer-a", event_id=ask_id)  # by defaults to actor_id
        check(k.get("acked") is True and k.get("already") is False, "first ack", k)
        ack_ev = check_event(k.get("event"), "chat.ack", by="peer-a")
        check(ack_ev["data"] == {"actor_id": "peer-a", "event_id": ask_id}, "chat.ack data", ack_ev)
        k2 = c.chat_ack(group_id=gid, actor_id="peer-a", event_id=ask_id)
        check(k2.get("acked") is True and k2.get("already") is True and k2.get("event") is None,
              "repeated ack says already", k2)
        try:
            c.chat_ack(group_id=gid, actor_id="peer-a", event_id=ask_id, by="user")
            raise Fail("chat_ack with by != actor_id must fail")
        except DaemonAPIError as e:
            check(e.code == "permission_denied", "ack by someone else => permission_denied", e.code, e.message)

        step("reply")
        r = c.reply(group_id=gid, reply_to=ask_id, text="Reviewed, all good", by="peer-a")
        rep = check_event(r.get("event"), "chat.message", by="peer-a")
        rep_id = rep["id"]
        check(rep["data"].get("reply_to") == ask_id, "reply.reply_to == ask id", rep)
        check(rep["data"].get("to") == ["user"], "reply without to goes back to the sender (user)", rep)
        check(rep["data"].get("quote_text") == "Please review the release checklist", "reply quote_text", rep)
        check("ack_event" in r and r.get("ack_event") is None, "reply after ack: ack_event null", r)

        step("inbox user")
        ub = c.inbox_list(group_id=gid, actor_id="user", limit=0)
        umsgs = ub.get("messages") or []
        found = [m for m in umsgs if m.get("id") == rep_id]
        check(len(found) == 1, "user inbox contains the reply", ub)
        check(found[0].get("data", {}).get("reply_to") == ask_id, "user inbox reply has reply_to", found[0])
        check(ask_id not in [m.get("id") for m in umsgs], "own message not in user's inbox", umsgs)

        step("events_stream #1")
        # Resume from the reply so the marker below is seen whether the subscription is registered
        # before (live) or after (replayed) it is appended: no race with the reader thread.
        s1 = StreamReader(c, group_id=gid, by="user", since_event_id=rep_id)
        m0 = check_event(c.send(group_id=gid, text="marker m0", to=["peer-a"]).get("event"), "chat.message")
        seen = s1.wait_chat([m0["id"]], timeout)
        check(seen[:1] == [m0["id"]], "stream #1 delivers the marker first", seen)
        check(m0["data"].get("to") == ["peer-a"], "m0 to", m0)
        recorded = m0["id"]
        s1.close()

        step("send m1 m2")
        m1 = check_event(c.send(group_id=gid, text="m1 from user to lead", to=["lead"],
                                priority="attention").get("event"), "chat.message")
        m2 = check_event(c.send(group_id=gid, text="m2 from lead to peer-a", to=["peer-a"],
                                by="lead").get("event"), "chat.message", by="lead")
        check(m2["data"].get("sender_title") == "Lead" and m2["data"].get("sender_runtime") == "custom",
              "sender_title/sender_runtime filled for actor senders", m2)

        step("events_stream #2 (since_event_id)")
        s2 = StreamReader(c, group_id=gid, by="user", since_event_id=recorded)
        seen = s2.wait_chat([m1["id"], m2["id"]], timeout)
        check(seen[:2] == [m1["id"], m2["id"]], "since_event_id replays m1, m2 in order", seen)
        # The replay must only contain events after the recorded one.
        replayed_ids = [it["event"].get("id") for it in s2.items if it.get("t") == "event"]
        check(recorded not in replayed_ids and ask_id not in replayed_ids, "replay starts after since_event_id",
              replayed_ids)

        step("events_stream #2 live")
        s3 = StreamReader(c, group_id=gid, by="peer-a", since_event_id=recorded)  # actor view
        m3 = check_event(c.send(group_id=gid, text="m3 live", to=["@all"]).get("event"), "chat.message")
        t0 = time.time()
        seen = s2.wait_chat([m3["id"]], timeout)
        check(m3["id"] in seen, "live event arrives on the open stream", seen)
        live_latency = round(time.time() - t0, 3)
        check(live_latency < 5.0, "live event must arrive quickly (no heartbeat needed)", live_latency)
        hb = [it for it in s2.items if it.get("t") == "heartbeat"]
        check(not hb, "no heartbeat expected within a few seconds of activity", hb)
        s2.close()

        step("events_stream actor view")
        seen3 = s3.wait_chat([m2["id"], m3["id"]], timeout)
        check(seen3[:2] == [m2["id"], m3["id"]], "actor view (by=peer-a) replays m2 then gets m3", seen3)
        for it in s3.items:
            if it.get("t") != "event":
                continue
            e = it["event"]
            check(e.get("kind") in ("chat.message", "system.notify"), "actor view only carries chat/notify", e)
            check(e.get("id") != m1["id"], "actor view must not contain m1 (user -> lead)", e)
            if e.get("kind") == "system.notify":
                tgt = (e.get("data") or {}).get("target_actor_id")
                check(tgt in (None, "", "peer-a"), "actor view notify targets peer-a", e)
        s3.close()

        summary.update({
            "scope_key": a["scope_key"],
            "ask_id": ask_id,
            "reply_id": rep_id,
            "recorded_event_id": recorded,
            "replayed": [m1["id"], m2["id"]],
            "live_event_id": m3["id"],
            "live_latency_s": live_latency,
            "checks": CHECKS,
        })
    finally:
        shutil.rmtree(scope_dir, ignore_errors=True)

    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"sdk_drive: FAIL [{STEP}] {e}", file=sys.stderr)
    except DaemonAPIError as e:
        print(f"sdk_drive: FAIL [{STEP}] daemon error {e.code}: {e.message} {e.details or ''}", file=sys.stderr)
    except CCCCSDKError as e:
        print(f"sdk_drive: FAIL [{STEP}] SDK error {type(e).__name__}: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001
        print(f"sdk_drive: FAIL [{STEP}] unexpected {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
