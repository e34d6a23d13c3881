//! Who may do what: every operator action and the role it needs, in one
//! table that the admin API and the dashboard both read, so the same
//! token gets the same answer from both (no role is written in a handler).

use crate::config::Role;

/// A ramp command, as named in URLs and forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RampCommand {
    Pause,
    Resume,
    Approve,
    Promote,
    Abort,
    Restart,
}

impl RampCommand {
    pub(crate) const ALL: [RampCommand; 6] = [
        RampCommand::Pause,
        RampCommand::Resume,
        RampCommand::Approve,
        RampCommand::Promote,
        RampCommand::Abort,
        RampCommand::Restart,
    ];

    /// The command a URL segment names.
    pub(crate) fn parse(name: &str) -> Option<RampCommand> {
        RampCommand::ALL.into_iter().find(|command| command.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RampCommand::Pause => "pause",
            RampCommand::Resume => "resume",
            RampCommand::Approve => "approve",
            RampCommand::Promote => "promote",
            RampCommand::Abort => "abort",
            RampCommand::Restart => "restart",
        }
    }

    /// What the command did, said to the operator afterwards.
    pub(crate) fn done(self) -> &'static str {
        match self {
            RampCommand::Pause => "Paused",
            RampCommand::Resume => "Resumed",
            RampCommand::Approve => "Approved the next step",
            RampCommand::Promote => "Promoted to the next step",
            RampCommand::Abort => "Aborted: rolled back to 0 %",
            RampCommand::Restart => "Restarted with a new run",
        }
    }

    /// The domain command, issued by `by`.
    pub(crate) fn command(self, by: String, force: Option<String>) -> crate::ramp::decide::Command {
        use crate::ramp::decide::Command;
        match self {
            RampCommand::Pause => Command::Pause { by },
            RampCommand::Resume => Command::Resume { by },
            RampCommand::Approve => Command::Approve { by },
            RampCommand::Promote => Command::Promote { by, force },
            RampCommand::Abort => Command::Abort { by },
            RampCommand::Restart => Command::Restart { by, run_id: String::new() },
        }
    }
}

/// Everything an operator can do through the admin API or the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Any page or GET: flags, history, audit, ramps, releases, the console.
    Read,
    /// Create or replace an API-owned flag.
    WriteFlag,
    /// Turn a flag on or off (the kill switch).
    SwitchFlag,
    DeleteFlag,
    RevertFlag,
    /// Copy a flag into another environment (production included).
    PromoteFlag,
    Ramp(RampCommand),
    /// Start a dashboard session.
    SignIn,
    SignOut,
    /// Post Alertmanager alerts, which pause or roll back the ramps they
    /// name as each ramp's file says (`alerts.onFiring`).
    PostAlerts,
}

impl Action {
    /// Every action, for the tests that hold both surfaces to this table.
    #[cfg(test)]
    pub(crate) const ALL: [Action; 15] = [
        Action::Read,
        Action::WriteFlag,
        Action::SwitchFlag,
        Action::DeleteFlag,
        Action::RevertFlag,
        Action::PromoteFlag,
        Action::Ramp(RampCommand::Pause),
        Action::Ramp(RampCommand::Resume),
        Action::Ramp(RampCommand::Approve),
        Action::Ramp(RampCommand::Promote),
        Action::Ramp(RampCommand::Abort),
        Action::Ramp(RampCommand::Restart),
        Action::SignIn,
        Action::SignOut,
        Action::PostAlerts,
    ];

    /// The least role that may do it. Everyday changes need `write`;
    /// what changes another environment or moves users outside a ramp's
    /// own checks (promoting a flag, promoting, aborting or restarting a
    /// ramp) needs `admin`. A relay token is for relays only: it may do
    /// none of this, not even read. Alerts need the narrow `alerts` role
    /// (or `write`: what an alert may do, the ramp's file decides).
    pub(crate) fn required(self) -> Role {
        match self {
            Action::PostAlerts => Role::Alerts,
            Action::Read | Action::SignIn | Action::SignOut => Role::Read,
            Action::WriteFlag | Action::SwitchFlag | Action::DeleteFlag | Action::RevertFlag => Role::Write,
            Action::Ramp(RampCommand::Pause | RampCommand::Resume | RampCommand::Approve) => Role::Write,
            Action::PromoteFlag | Action::Ramp(RampCommand::Promote | RampCommand::Abort | RampCommand::Restart) => {
                Role::Admin
            }
        }
    }

    /// Whether a caller with `role` may do it.
    pub(crate) fn allows(self, role: Role) -> bool {
        match (self, role) {
            (Action::PostAlerts, Role::Alerts | Role::Write | Role::Admin) => true,
            // An alerts token posts alerts and nothing else; a relay or read
            // token posts no alerts (they would move ramps).
            (Action::PostAlerts, _) | (_, Role::Alerts) => false,
            _ => role >= self.required(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_token_may_do_nothing_and_admin_everything() {
        for action in Action::ALL {
            assert!(!action.allows(Role::Relay), "{action:?}");
            assert!(action.allows(Role::Admin), "{action:?}");
        }
        assert!(!Action::PromoteFlag.allows(Role::Write), "promotion into another environment is admin");
    }

    #[test]
    fn an_alerts_token_posts_alerts_and_nothing_else() {
        for action in Action::ALL {
            assert_eq!(action.allows(Role::Alerts), action == Action::PostAlerts, "{action:?}");
        }
        assert!(Action::PostAlerts.allows(Role::Write) && Action::PostAlerts.allows(Role::Admin));
        assert!(!Action::PostAlerts.allows(Role::Read) && !Action::PostAlerts.allows(Role::Relay));
    }

    #[test]
    fn ramp_commands_read_back_as_named() {
        for command in RampCommand::ALL {
            assert_eq!(RampCommand::parse(command.as_str()), Some(command));
        }
        assert_eq!(RampCommand::parse("explode"), None);
    }
}
