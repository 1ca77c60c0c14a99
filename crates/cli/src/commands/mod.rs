//! The `ls` and `inspect` subcommands (`cp` lives in [`crate::copy`]).

pub mod inspect;
pub mod ls;
pub mod token;
