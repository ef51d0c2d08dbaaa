//! `CCCC_HOME` layout and the small JSON documents at its top: `registry.json`, `active.json`.
//!
//! The layout is the reference's (spec §1.2). Every document is rewritten atomically (temp
//! file, fsync, rename, fsync of the directory) so a crash leaves either the old or the new
//! version, never a torn one.

use serde_json::{Map, Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The resolved `CCCC_HOME` and the paths inside it.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `CCCC_HOME` (trimmed, `~` expanded, made absolute) or `~/.cccc`.
    pub fn resolve() -> Home {
        let raw = std::env::var("CCCC_HOME").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let home_dir = std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"));
        let path = match raw {
            Some(s) if s == "~" => home_dir,
            Some(s) if s.starts_with("~/") => home_dir.join(&s[2..]),
            Some(s) => PathBuf::from(s),
            None => home_dir.join(".cccc"),
        };
        let path = if path.is_absolute() { path } else { std::env::current_dir().unwrap_or_default().join(path) };
        Home { root: path }
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn daemon_dir(&self) -> PathBuf {
        self.root.join("daemon")
    }
    pub fn sock_path(&self) -> PathBuf {
        self.daemon_dir().join("ccccd.sock")
    }
    pub fn addr_path(&self) -> PathBuf {
        self.daemon_dir().join("ccccd.addr.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.daemon_dir().join("ccccd.pid")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.daemon_dir().join("ccccd.lock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.daemon_dir().join("ccccd.log")
    }
    pub fn registry_path(&self) -> PathBuf {
        self.root.join("registry.json")
    }
    pub fn active_path(&self) -> PathBuf {
        self.root.join("active.json")
    }
    pub fn groups_dir(&self) -> PathBuf {
        self.root.join("groups")
    }
    pub fn group_dir(&self, group_id: &str) -> PathBuf {
        self.groups_dir().join(group_id)
    }

    /// The active group id from `active.json`, or "".
    pub fn active_group_id(&self) -> String {
        read_json(&self.active_path())
            .ok()
            .and_then(|v| v.get("active_group_id").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    }

    /// Write `active.json` and return the document written.
    pub fn set_active_group_id(&self, group_id: &str) -> io::Result<Value> {
        let doc = json!({"v": 1, "active_group_id": group_id, "updated_at": cccc_proto::ts::now()});
        write_json_pretty(&self.active_path(), &doc)?;
        Ok(doc)
    }
}

/// Read and parse a JSON file.
pub fn read_json(path: &Path) -> io::Result<Value> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Replace `path` atomically with `bytes` (temp file in the same directory, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write a JSON document as the reference does (`indent=2`, UTF-8, trailing newline).
pub fn write_json_pretty(path: &Path, value: &Value) -> io::Result<()> {
    let mut s = cccc_proto::json::to_pretty_string(value);
    s.push('\n');
    atomic_write(path, s.as_bytes())
}

/// The group registry (`registry.json`), kept as a JSON object so that keys we do not know
/// survive a rewrite.
#[derive(Clone, Debug)]
pub struct Registry {
    pub doc: Map<String, Value>,
}

impl Registry {
    fn fresh() -> Registry {
        let now = cccc_proto::ts::now();
        let v = json!({"v": 1, "created_at": now, "updated_at": now, "groups": {}, "defaults": {}});
        Registry { doc: v.as_object().cloned().unwrap_or_default() }
    }

    /// Load the registry; a missing, empty or invalid file gives a fresh document (as the
    /// reference does). An invalid file is kept aside as `registry.json.corrupt-<ts>` before
    /// anything overwrites it, so nothing is lost.
    pub fn load(home: &Home) -> Registry {
        let path = home.registry_path();
        match read_json(&path) {
            Ok(Value::Object(mut m)) => {
                if !m.get("groups").is_some_and(Value::is_object) {
                    m.insert("groups".into(), json!({}));
                }
                if !m.get("defaults").is_some_and(Value::is_object) {
                    m.insert("defaults".into(), json!({}));
                }
                Registry { doc: m }
            }
            Ok(_) | Err(_) if path.exists() && fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false) => {
                let aside = path.with_file_name(format!("registry.json.corrupt-{}", cccc_proto::ts::now_micros()));
                let _ = fs::copy(&path, &aside);
                tracing::warn!(path = %path.display(), kept = %aside.display(), "registry.json is not a JSON object; starting a fresh registry");
                Registry::fresh()
            }
            _ => Registry::fresh(),
        }
    }

    pub fn save(&mut self, home: &Home) -> io::Result<()> {
        self.doc.insert("updated_at".into(), Value::from(cccc_proto::ts::now()));
        write_json_pretty(&home.registry_path(), &Value::Object(self.doc.clone()))
    }

    pub fn groups(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.doc.get("groups").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn groups_mut(&mut self) -> &mut Map<String, Value> {
        self.doc.entry("groups").or_insert_with(|| json!({}));
        self.doc.get_mut("groups").and_then(Value::as_object_mut).expect("groups is an object")
    }

    pub fn defaults_mut(&mut self) -> &mut Map<String, Value> {
        self.doc.entry("defaults").or_insert_with(|| json!({}));
        self.doc.get_mut("defaults").and_then(Value::as_object_mut).expect("defaults is an object")
    }

    pub fn default_group_for_scope(&self, scope_key: &str) -> Option<String> {
        self.doc.get("defaults")?.get(scope_key)?.as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_survives_garbage_and_keeps_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        fs::write(home.registry_path(), b"{not json").unwrap();
        let mut reg = Registry::load(&home);
        assert!(reg.groups().is_empty());
        reg.save(&home).unwrap();
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("registry.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::read(kept[0].path()).unwrap(), b"{not json");
        let again = Registry::load(&home);
        assert_eq!(again.doc.get("v"), Some(&json!(1)));
    }

    #[test]
    fn active_group_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(home.active_group_id(), "");
        home.set_active_group_id("g_0123456789ab").unwrap();
        assert_eq!(home.active_group_id(), "g_0123456789ab");
    }
}
