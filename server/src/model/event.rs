//! A notable change of a ramp: what the decision log, the audit log,
//! metrics, logs and webhooks report.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Started,
    Advanced,
    Holding,
    Baking,
    Pending,
    Paused,
    Resumed,
    ApprovalRequested,
    Approved,
    RolledBack,
    Completed,
    Restarted,
    ConfigChangeRefused,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 13] = [
        EventKind::Started,
        EventKind::Advanced,
        EventKind::Holding,
        EventKind::Baking,
        EventKind::Pending,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::ApprovalRequested,
        EventKind::Approved,
        EventKind::RolledBack,
        EventKind::Completed,
        EventKind::Restarted,
        EventKind::ConfigChangeRefused,
    ];

    /// Whether a webhook may subscribe to it (`notify[].events`): every
    /// kind but `pending`, which only says a ramp has not started.
    pub fn is_subscribable(self) -> bool {
        self != EventKind::Pending
    }

    /// The stable name: stored records, audit actions (`ramp.<name>`),
    /// metric labels and webhook bodies use it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Advanced => "advanced",
            EventKind::Holding => "holding",
            EventKind::Baking => "baking",
            EventKind::Pending => "pending",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::ApprovalRequested => "approval_requested",
            EventKind::Approved => "approved",
            EventKind::RolledBack => "rolled_back",
            EventKind::Completed => "completed",
            EventKind::Restarted => "restarted",
            EventKind::ConfigChangeRefused => "config_change_refused",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Events people should look at (logged as warnings).
    pub fn is_warning(self) -> bool {
        matches!(self, EventKind::RolledBack | EventKind::Paused | EventKind::Holding)
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A notable change, with why and by whom. A dry run's events say what
/// would have happened: their name is `would_<kind>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredEvent", try_from = "StoredEvent")]
pub struct Event {
    pub kind: EventKind,
    /// Recorded by a dry run: nothing was exposed.
    pub would: bool,
    pub reason: Option<String>,
    pub by: String,
    /// The operator's own words on a command (the dashboard asks for them).
    pub note: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind, reason: Option<String>, by: &str) -> Event {
        Event { kind, would: false, reason, by: by.to_owned(), note: None }
    }

    /// The event's name as stored and reported: `advanced`, or
    /// `would_advanced` in a dry run.
    pub fn name(&self) -> String {
        if self.would { format!("would_{}", self.kind.as_str()) } else { self.kind.as_str().to_owned() }
    }
}

/// The stored shape: the kind as one name.
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    kind: String,
    reason: Option<String>,
    by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl From<Event> for StoredEvent {
    fn from(event: Event) -> StoredEvent {
        StoredEvent { kind: event.name(), reason: event.reason, by: event.by, note: event.note }
    }
}

impl TryFrom<StoredEvent> for Event {
    type Error = String;

    fn try_from(stored: StoredEvent) -> Result<Event, String> {
        let (would, name) = match stored.kind.strip_prefix("would_") {
            Some(name) => (true, name),
            None => (false, stored.kind.as_str()),
        };
        let kind = EventKind::parse(name).ok_or_else(|| format!("unknown ramp event '{}'", stored.kind))?;
        Ok(Event { kind, would, reason: stored.reason, by: stored.by, note: stored.note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_round_trip() {
        let stored = r#"[{"kind":"rolled_back","reason":"Aborted","by":"ana"},{"kind":"would_advanced","reason":"25%","by":"controller"}]"#;
        let events: Vec<Event> = serde_json::from_str(stored).expect("stored events load");
        assert_eq!(events[0], Event::new(EventKind::RolledBack, Some("Aborted".into()), "ana"));
        assert!(events[1].would && events[1].kind == EventKind::Advanced);
        assert_eq!(serde_json::to_string(&events).expect("serialise"), stored);
        assert!(serde_json::from_str::<Event>(r#"{"kind":"exploded","reason":null,"by":"x"}"#).is_err());
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert!(!EventKind::Pending.is_subscribable() && EventKind::RolledBack.is_subscribable());
    }
}
