//! A configuration's wire forms — flagd's sync payload and the flag-set
//! document — serialised once per version, whatever the number of stream
//! clients, and shared as `Bytes`.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::snapshot::Snapshot;

/// The newest version's wire forms, each rendered on first use.
#[derive(Debug, Default)]
pub(super) struct WireCache {
    latest: Mutex<Option<(u64, Arc<Forms>)>>,
}

#[derive(Debug, Default)]
struct Forms {
    flagd: OnceLock<Bytes>,
    document: OnceLock<Bytes>,
}

impl WireCache {
    /// The forms of `snapshot`'s version: cached for the newest version
    /// asked about; an older snapshot's are rendered without keeping them.
    fn forms(&self, snapshot: &Snapshot) -> Arc<Forms> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        match &*latest {
            Some((version, forms)) if *version == snapshot.version => forms.clone(),
            Some((version, _)) if *version > snapshot.version => Arc::default(),
            _ => {
                let forms = Arc::<Forms>::default();
                *latest = Some((snapshot.version, forms.clone()));
                forms
            }
        }
    }

    pub(super) fn flagd_json(&self, snapshot: &Snapshot) -> Bytes {
        self.forms(snapshot).flagd.get_or_init(|| render_flagd(snapshot)).clone()
    }

    pub(super) fn document_json(&self, snapshot: &Snapshot) -> Bytes {
        self.forms(snapshot).document.get_or_init(|| render_document(snapshot)).clone()
    }
}

/// flagd's sync payload: every flag with `$evaluators` inlined and the
/// flag-set metadata merged into its own, `defaultVariant` as `""` when
/// there is none (what flagd sends).
fn render_flagd(snapshot: &Snapshot) -> Bytes {
    let flags: serde_json::Map<String, Value> = snapshot
        .flags
        .iter()
        .filter(|flag| flag.definition_json() != "null")
        .map(|flag| {
            let mut definition = flag.definition();
            if let Some(fields) = definition.as_object_mut() {
                fields.insert("metadata".into(), Value::Object(flag.metadata().clone()));
                if fields.get("defaultVariant").is_none_or(Value::is_null) {
                    fields.insert("defaultVariant".into(), Value::String(String::new()));
                }
            }
            (flag.key().to_owned(), definition)
        })
        .collect();
    Bytes::from(serde_json::json!({ "flags": flags }).to_string())
}

/// A flagd flag-set document (what Rampart's own sync sends):
/// `{"flags": {…}, "metadata": {…}}`.
fn render_document(snapshot: &Snapshot) -> Bytes {
    let flags = snapshot.flags.iter().filter(|flag| flag.definition_json() != "null");
    let mut out = super::flags_object(flags.map(|flag| (flag.key(), flag.definition_json())));
    out.truncate(out.len() - 1);
    out.push_str(",\"metadata\":");
    out.push_str(&serde_json::to_string(snapshot.flags.metadata()).unwrap_or_else(|_| "{}".into()));
    out.push('}');
    Bytes::from(out)
}
