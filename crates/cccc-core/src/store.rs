//! Groups opened in memory, and the locking discipline around them.
//!
//! Each group lives in a [`GroupSlot`]: its state behind one mutex (operations on one group are
//! applied one at a time, in arrival order) and its ledger's [`Durability`] outside that mutex,
//! so that waiting for an fsync never blocks the next operation from being applied. An
//! operation runs under the lock, writes its events, releases the lock, and then waits until
//! the ledger is durable up to the end of what it wrote: see [`Store::with_group`].
//!
//! Groups are opened lazily (the daemon also warms them in the background after it starts
//! listening), so start-up time does not grow with history.

use crate::cursors::Cursors;
use crate::group::GroupDoc;
use crate::home::{Home, Registry};
use crate::ledger::{Appended, AppendError, Durability, Ledger};
use crate::{OpResult, err};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Lock a mutex, recovering from poisoning: a panic in one request must not take the group
/// (or the daemon) down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One group's in-memory state.
pub struct Group {
    pub id: String,
    pub dir: PathBuf,
    pub doc: GroupDoc,
    pub ledger: Ledger,
    pub cursors: Cursors,
    /// Actors whose runtime session is live, with the time it started. Headless actors have no
    /// process: their session is live from start to stop.
    pub live: BTreeMap<String, String>,
    /// Set when the group was deleted while someone still held the slot.
    pub deleted: bool,
    /// Sessions, process exits and delivery cursors of the actors.
    pub runtime: crate::runtime::Runtime,
}

impl Group {
    pub fn open(home: &Home, id: &str) -> OpResult<Group> {
        let dir = home.group_dir(id);
        let yaml = dir.join("group.yaml");
        if !yaml.exists() {
            return Err(err("group_not_found", format!("group not found: {id}")));
        }
        let doc = GroupDoc::load(&yaml).map_err(|e| err("group_corrupt", e))?;
        let ledger = Ledger::open(&dir).map_err(|e| err("internal_error", format!("cannot open ledger of {id}: {e}")))?;
        let mut cursors = Cursors::load(&dir);
        // Recover cursor moves that reached the ledger but not the cursor file.
        let mut moved = false;
        for r in &ledger.index.reads {
            let e = &ledger.index.entries[r.target as usize];
            let actor = ledger.index.sym_name(r.actor).to_string();
            if cursors.ts_of(&actor).is_none_or(|c| c < e.ts) {
                moved |= cursors.advance(&actor, &ledger.index.id_of(r.target), &cccc_proto::ts::format(e.ts), e.ts);
            }
        }
        if moved {
            let _ = cursors.save();
        }
        let mut g = Group { id: id.to_string(), dir, doc, ledger, cursors, live: BTreeMap::new(), deleted: false, runtime: Default::default() };
        if g.doc.running_flag() {
            // The daemon restarts enabled actors of running groups on boot (spec §5.2).
            let ids: Vec<String> = g.doc.actor_views().filter(|a| a.enabled && !a.internal && a.runner == "headless").map(|a| a.id.to_string()).collect();
            let now = cccc_proto::ts::now();
            g.live.extend(ids.into_iter().map(|id| (id, now.clone())));
        }
        // PTY actors whose host survived are reattached; lost ones restart if they should run.
        for id in crate::runtime::reattach(&mut g) {
            match crate::runtime::start_pty(&mut g, &id) {
                Ok(()) => {
                    g.live.insert(id.clone(), cccc_proto::ts::now());
                    let runner = "pty";
                    let _ = g.append("actor.start", "", "system", serde_json::json!({"actor_id": id, "runner": runner, "runner_effective": null}));
                }
                Err(e) => tracing::warn!(group = %g.id, actor = %id, error = %e, "could not restart PTY actor"),
            }
        }
        Ok(g)
    }

    pub fn yaml_path(&self) -> PathBuf {
        self.dir.join("group.yaml")
    }

    /// Persist group.yaml.
    pub fn save(&mut self) -> OpResult<()> {
        let path = self.yaml_path();
        self.doc.save(&path).map_err(|e| err("internal_error", format!("cannot write {}: {e}", path.display())))
    }

    /// Append an event to this group's ledger (written now, durable before the op answers).
    pub fn append(&mut self, kind: &str, scope_key: &str, by: &str, data: Value) -> OpResult<Appended> {
        self.append_with_id(cccc_proto::new_event_id(), kind, scope_key, by, data)
    }

    pub fn append_with_id(&mut self, id: String, kind: &str, scope_key: &str, by: &str, data: Value) -> OpResult<Appended> {
        let gid = self.id.clone();
        self.ledger.append_with_id(id, kind, &gid, scope_key, by, data).map_err(|e| match e {
            AppendError::TooLarge(n) => err("invalid_event_data", format!("event too large to append: {n} bytes")),
            AppendError::Io(e) => err("internal_error", format!("ledger write failed: {e}")),
        })
    }

    /// The full event at index position `pos` as JSON.
    pub fn event_value(&self, pos: u32) -> OpResult<Value> {
        let ev = self.ledger.read(pos).map_err(|e| err("internal_error", format!("cannot read ledger: {e}")))?;
        Ok(ev.to_value())
    }

    pub fn save_cursors(&self) -> OpResult<()> {
        self.cursors.save().map_err(|e| err("internal_error", format!("cannot write read cursors: {e}")))
    }

    /// Is the actor's runtime session live?
    pub fn is_live(&self, actor: &str) -> bool {
        self.live.contains_key(actor)
    }
}

/// A group and its durability handle.
pub struct GroupSlot {
    pub id: String,
    pub group: Mutex<Group>,
    pub durability: Arc<Durability>,
}

/// Factory for the hook that receives each group's durable events (the daemon's stream bus).
pub type PublishFactory = Box<dyn Fn(&str) -> Box<dyn Fn(&Appended) + Send + Sync> + Send + Sync>;

/// Every group of one home.
pub struct Store {
    pub home: Home,
    pub registry: Mutex<Registry>,
    slots: Mutex<HashMap<String, Arc<GroupSlot>>>,
    /// One opener per group id: two requests racing to open one group must not both repair its
    /// ledger tail or restart its actors (the loser waits, then finds the slot).
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    publish: Option<PublishFactory>,
}

impl Store {
    pub fn new(home: Home, publish: Option<PublishFactory>) -> Store {
        let registry = Registry::load(&home);
        Store { home, registry: Mutex::new(registry), slots: Mutex::new(HashMap::new()), opening: Mutex::new(HashMap::new()), publish }
    }

    /// The slot of group `id`, opening the group if needed.
    pub fn slot(&self, id: &str) -> OpResult<Arc<GroupSlot>> {
        if id.is_empty() {
            return Err(err("missing_group_id", "missing group_id"));
        }
        if !id.starts_with("g_") || id.contains('/') || id.contains("..") {
            return Err(err("group_not_found", format!("group not found: {id}")));
        }
        if let Some(s) = lock(&self.slots).get(id) {
            return Ok(s.clone());
        }
        // Open outside the map lock: indexing a large ledger must not stall other groups.
        let gate = lock(&self.opening).entry(id.to_string()).or_default().clone();
        let _opening = lock(&gate);
        if let Some(s) = lock(&self.slots).get(id) {
            return Ok(s.clone());
        }
        let group = Group::open(&self.home, id)?;
        let durability = group.ledger.durability();
        if let Some(f) = &self.publish {
            durability.set_publish(f(id));
        }
        let slot = Arc::new(GroupSlot { id: id.to_string(), group: Mutex::new(group), durability });
        let mut slots = lock(&self.slots);
        Ok(slots.entry(id.to_string()).or_insert(slot).clone())
    }

    /// Ids of open groups.
    pub fn open_ids(&self) -> Vec<String> {
        lock(&self.slots).keys().cloned().collect()
    }

    pub fn forget(&self, id: &str) {
        lock(&self.slots).remove(id);
    }

    /// Run `f` on group `id` under its lock, then wait until everything it appended is durable.
    pub fn with_group<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> OpResult<T>) -> OpResult<T> {
        let slot = self.slot(id)?;
        let (out, end) = {
            let mut g = lock(&slot.group);
            if g.deleted {
                return Err(err("group_not_found", format!("group not found: {id}")));
            }
            let out = f(&mut g);
            (out, g.ledger.len())
        };
        slot.durability.wait_durable(end).map_err(|e| err("internal_error", format!("ledger fsync failed: {e}")))?;
        out
    }

    /// Read-only access: waits until everything it could observe is durable, so no response
    /// ever shows an event that a crash could take back.
    pub fn read_group<T>(&self, id: &str, f: impl FnOnce(&Group) -> OpResult<T>) -> OpResult<T> {
        self.with_group(id, |g| f(g))
    }

    /// Registry entry for a group, mirroring group.yaml.
    pub fn registry_entry(&self, doc: &GroupDoc, dir: &std::path::Path, created_at: Option<&str>) -> Value {
        let s = |k: &str| doc.doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        json!({
            "group_id": s("group_id"),
            "title": s("title"),
            "topic": s("topic"),
            "path": dir.display().to_string(),
            "default_scope_key": s("active_scope_key"),
            "created_at": created_at.map(str::to_string).unwrap_or_else(|| s("created_at")),
            "updated_at": s("updated_at"),
        })
    }

    /// Mirror title/topic/default scope of a group into the registry and save it.
    pub fn sync_registry(&self, g: &Group) -> OpResult<()> {
        let mut reg = lock(&self.registry);
        let created = reg.groups().get(&g.id).and_then(|e| e.get("created_at")).and_then(Value::as_str).map(str::to_string);
        let entry = self.registry_entry(&g.doc, &g.dir, created.as_deref());
        reg.groups_mut().insert(g.id.clone(), entry);
        reg.save(&self.home).map_err(|e| err("internal_error", format!("cannot write registry.json: {e}")))
    }
}
