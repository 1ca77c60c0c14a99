//! The `ls`, `inspect` and `token` subcommands (`cp` lives in [`crate::copy`]);
//! [`nvme`] serves `ls` and `inspect` for `nvme+tcp://` addresses.

pub mod inspect;
pub mod ls;
pub mod nvme;
pub mod token;
