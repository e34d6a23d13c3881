//! Dashboard sessions: signing in with an admin token gives a session id
//! in a cookie and a CSRF token for the session's forms.
//!
//! Sessions live in memory (a restart signs everyone out, which is the
//! safe direction) and are kept by the digest of their id, so a memory
//! dump does not hand out live cookies. Their number is bounded
//! ([`MAX_SESSIONS`]); at the bound the oldest session ends.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::KeyDigest;
use crate::http::auth::Caller;
use crate::time::Clock;

/// How long a session lasts from sign-in.
pub(crate) const SESSION_LIFETIME_MS: u64 = 12 * 3600 * 1000;
/// Most sessions kept at once; signing in beyond it ends the oldest.
pub(crate) const MAX_SESSIONS: usize = 10_000;
/// Most sessions of one token; signing in beyond it ends that token's
/// oldest, so one token holder cannot end other people's sessions.
pub(crate) const MAX_SESSIONS_PER_TOKEN: usize = 20;

/// A signed-in operator.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) caller: Caller,
    /// Every state-changing form carries it; compared by digest.
    pub(crate) csrf: String,
    pub(crate) expires_at: u64,
}

#[derive(Debug)]
pub(crate) struct Sessions {
    clock: Clock,
    by_digest: Mutex<HashMap<KeyDigest, Session>>,
}

/// What signing in produced: the cookie's value and the session.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) id: String,
    /// A session ended to make room (the bound was reached).
    pub(crate) evicted: bool,
}

impl Sessions {
    pub(crate) fn new(clock: Clock) -> Sessions {
        Sessions { clock, by_digest: Mutex::new(HashMap::new()) }
    }

    /// Starts a session for `caller`.
    pub(crate) fn start(&self, caller: Caller) -> Option<SignedIn> {
        let id = random_token()?;
        let now = self.clock.now_millis();
        let session = Session { caller, csrf: random_token()?, expires_at: now + SESSION_LIFETIME_MS };
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires_at > now);
        let mut evicted = false;
        let own: Vec<(KeyDigest, u64)> = sessions
            .iter()
            .filter(|(_, s)| s.caller.name == session.caller.name)
            .map(|(k, s)| (*k, s.expires_at))
            .collect();
        if own.len() >= MAX_SESSIONS_PER_TOKEN
            && let Some((oldest, _)) = own.iter().min_by_key(|(_, expires_at)| *expires_at)
        {
            sessions.remove(oldest);
            evicted = true;
        }
        if sessions.len() >= MAX_SESSIONS {
            // The oldest is the one that expires first.
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires_at).map(|(k, _)| *k) {
                sessions.remove(&oldest);
                evicted = true;
            }
        }
        sessions.insert(KeyDigest::of(&id), session.clone());
        Some(SignedIn { id, evicted })
    }

    /// The live session with this cookie value.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let now = self.clock.now_millis();
        let digest = KeyDigest::of(id);
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(&digest) {
            Some(session) if session.expires_at > now => Some(session.clone()),
            Some(_) => {
                sessions.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// Signs out.
    pub(crate) fn end(&self, id: &str) {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner()).remove(&KeyDigest::of(id));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// 32 random bytes as hex, from the operating system's randomness.
pub(crate) fn random_token() -> Option<String> {
    crate::store::random_secret().ok().map(hex::encode)
}

/// Whether a submitted CSRF token is the session's (compared by digest, so
/// the time taken does not depend on how much of a guess is right).
pub(crate) fn csrf_matches(session_token: &str, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|submitted| KeyDigest::of(submitted).0 == KeyDigest::of(session_token).0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Role;

    fn caller() -> Caller {
        Caller { name: "ana".into(), role: Role::Write }
    }

    #[test]
    fn a_session_lives_until_its_lifetime_ends_or_it_is_ended() {
        let (clock, manual) = Clock::manual(1_000_000);
        let sessions = Sessions::new(clock);
        let first = sessions.start(caller()).expect("randomness");
        assert_eq!(first.id.len(), 64);
        let first_csrf = sessions.get(&first.id).expect("live").csrf;
        assert_eq!(sessions.get(&first.id).expect("live").caller.name, "ana");
        assert!(sessions.get("not-a-session").is_none());
        manual.advance(Duration::from_millis(SESSION_LIFETIME_MS - 1));
        assert!(sessions.get(&first.id).is_some(), "still inside its lifetime");
        manual.advance(Duration::from_millis(1));
        assert!(sessions.get(&first.id).is_none(), "expired");
        let second = sessions.start(caller()).expect("randomness");
        assert_ne!(first_csrf, sessions.get(&second.id).expect("live").csrf);
        sessions.end(&second.id);
        assert!(sessions.get(&second.id).is_none(), "signed out");
    }

    #[test]
    fn one_token_cannot_end_other_peoples_sessions() {
        let (clock, manual) = Clock::manual(0);
        let sessions = Sessions::new(clock);
        let ana = sessions.start(caller()).expect("randomness");
        let mallory = || Caller { name: "mallory".into(), role: Role::Read };
        let first = sessions.start(mallory()).expect("randomness");
        for _ in 1..MAX_SESSIONS {
            manual.advance(Duration::from_millis(1));
            sessions.start(mallory()).expect("randomness");
        }
        assert_eq!(sessions.len(), 1 + MAX_SESSIONS_PER_TOKEN);
        assert!(sessions.get(&ana.id).is_some(), "another token's session lives");
        assert!(sessions.get(&first.id).is_none(), "the token's own oldest ended");
    }

    #[test]
    fn at_the_bound_the_oldest_session_ends() {
        let (clock, manual) = Clock::manual(0);
        let sessions = Sessions::new(clock);
        let many = |n: usize| Caller { name: format!("operator-{}", n % 1000), role: Role::Read };
        let oldest = sessions.start(many(0)).expect("randomness");
        for n in 1..MAX_SESSIONS {
            manual.advance(Duration::from_millis(1));
            assert!(!sessions.start(many(n)).expect("randomness").evicted);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        manual.advance(Duration::from_millis(1));
        let newest = sessions.start(many(MAX_SESSIONS)).expect("randomness");
        assert!(newest.evicted);
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(&oldest.id).is_none());
        assert!(sessions.get(&newest.id).is_some());
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        assert!(csrf_matches("abc", Some("abc")));
        assert!(!csrf_matches("abc", Some("abd")));
        assert!(!csrf_matches("abc", Some("")));
        assert!(!csrf_matches("abc", None));
    }
}
