//! Exit codes of `rampart` (sysexits.h), listed in `rampart --help`.

/// `validate` found problems; `health` found the server unhealthy; the
/// server refused a `ramp` or `promote` command.
pub const PROBLEMS: u8 = 1;
/// `ramp`, `promote`: the server could not be reached.
pub const UNREACHABLE: u8 = 2;
/// `ramp wait`: the ramp rolled back.
pub const ROLLED_BACK: u8 = 3;
/// `ramp wait`: the ramp is paused or awaits approval — a person must act.
pub const NEEDS_OPERATOR: u8 = 4;
/// `ramp wait`: the timeout passed before the target was reached.
pub const TIMED_OUT: u8 = 5;
/// EX_USAGE: the configuration, or a flag or ramp file, is invalid.
pub const CONFIG: u8 = 64;
/// EX_DATAERR: the store holds records this version cannot read.
pub const STORE_DATA: u8 = 65;
/// EX_UNAVAILABLE: the store cannot be opened or reached; retry.
pub const STORE_UNAVAILABLE: u8 = 69;
/// EX_SOFTWARE: an internal failure, or a failure while serving.
pub const SOFTWARE: u8 = 70;
/// EX_OSERR: a listener's address cannot be bound (in use, not ours).
pub const BIND: u8 = 71;
