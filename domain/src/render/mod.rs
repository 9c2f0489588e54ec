//! Rendering profiles into what nodes load.

pub mod apparmor;
pub mod seccomp;
