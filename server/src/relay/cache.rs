//! The relay's cache: per environment, the configuration last received and
//! the upstream position it reflects, so a relay restarted while its
//! upstream is away serves what it had (and resumes with deltas when the
//! upstream returns within the same epoch). Written atomically (a
//! temporary file, synced, renamed over the old one), so a crash leaves
//! the previous or the new entry, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::KeyDigest;
use crate::environment::Credentials;

/// One environment's cache entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cached {
    pub epoch: String,
    pub version: u64,
    /// Unix ms when it was written.
    pub saved_at: u64,
    pub credentials: Credentials,
    pub flags_json: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    epoch: String,
    version: u64,
    saved_at: u64,
    open: bool,
    sdk_keys: Vec<String>,
    reporter_keys: Vec<String>,
    relay_tokens: Vec<String>,
    /// Absent in entries written before it existed: SDK keys do not report.
    #[serde(default)]
    sdk_key_outcomes: bool,
    flags_json: String,
}

/// The file of one environment: its name when that is a plain word, hex otherwise.
fn path(dir: &Path, environment: &str) -> PathBuf {
    let plain =
        !environment.is_empty() && environment.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let stem = if plain { environment.to_owned() } else { format!("x{}", hex::encode(environment)) };
    dir.join(format!("environment-{stem}.json"))
}

fn hexes(digests: &[KeyDigest]) -> Vec<String> {
    digests.iter().map(|digest| hex::encode(digest.0)).collect()
}

fn digests(hexes: &[String]) -> Vec<KeyDigest> {
    hexes
        .iter()
        .filter_map(|text| hex::decode(text).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()).map(KeyDigest))
        .collect()
}

pub(super) fn save(dir: &Path, environment: &str, cached: &Cached) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let entry = Entry {
        epoch: cached.epoch.clone(),
        version: cached.version,
        saved_at: cached.saved_at,
        open: cached.credentials.open,
        sdk_keys: hexes(&cached.credentials.sdk_keys),
        reporter_keys: hexes(&cached.credentials.reporter_keys),
        relay_tokens: hexes(&cached.credentials.relay_tokens),
        sdk_key_outcomes: cached.credentials.sdk_key_outcomes,
        flags_json: cached.flags_json.clone(),
    };
    let target = path(dir, environment);
    let temporary = target.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &target)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The entry of `environment`, if the cache has one.
pub(super) fn load(dir: &Path, environment: &str) -> std::io::Result<Option<Cached>> {
    let bytes = match std::fs::read(path(dir, environment)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let entry: Entry = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
    Ok(Some(Cached {
        epoch: entry.epoch,
        version: entry.version,
        saved_at: entry.saved_at,
        credentials: Credentials {
            open: entry.open,
            sdk_keys: digests(&entry.sdk_keys),
            reporter_keys: digests(&entry.reporter_keys),
            relay_tokens: digests(&entry.relay_tokens),
            sdk_key_outcomes: entry.sdk_key_outcomes,
        },
        flags_json: entry.flags_json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written_and_odd_names_stay_inside_the_directory() {
        let dir = std::env::temp_dir().join(format!("rampart-relay-cache-{}", std::process::id()));
        let cached = Cached {
            epoch: "e1".into(),
            version: 7,
            saved_at: 1_000,
            credentials: Credentials {
                open: false,
                sdk_keys: vec![KeyDigest::of("sdk-key")],
                reporter_keys: vec![],
                relay_tokens: vec![KeyDigest::of("relay")],
                sdk_key_outcomes: true,
            },
            flags_json: r#"{"flags":{}}"#.into(),
        };
        for name in ["production", "../etc/passwd"] {
            save(&dir, name, &cached).expect("save");
            assert!(path(&dir, name).starts_with(&dir));
            assert_eq!(load(&dir, name).expect("load"), Some(cached.clone()));
        }
        assert_eq!(load(&dir, "absent").expect("load"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
