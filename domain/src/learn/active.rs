//! Whether a profile is learning.

use crate::apparmor::{AppArmorMode, AppArmorProfile};
use crate::common::ProfileState;
use crate::seccomp::{SeccompAction, SeccompProfile, SeccompProfileSpec};

/// Whether a profile is learning: enabled, accepted, and in Complain mode (AppArmor) or
/// logging (seccomp). The operator publishes the pods that use such a profile to their
/// nodes, and the agents learn for it: one judgement for both.
pub fn apparmor_learning(p: &AppArmorProfile) -> bool {
    p.spec.mode == AppArmorMode::Complain
        && p.spec.state == ProfileState::Enabled
        && p.status.as_ref().is_some_and(|s| s.accepted.is_some())
}

/// [`apparmor_learning`] for a SeccompProfile.
pub fn seccomp_learning(p: &SeccompProfile) -> bool {
    seccomp_logs(&p.spec)
        && p.spec.state == ProfileState::Enabled
        && p.status.as_ref().is_some_and(|s| s.accepted.is_some())
}

/// Whether a seccomp profile logs (its default action or a rule is `SCMP_ACT_LOG`): what
/// such a filter logs is learned.
pub fn seccomp_logs(spec: &SeccompProfileSpec) -> bool {
    spec.default_action == SeccompAction::Log || spec.syscalls.iter().any(|r| r.action == SeccompAction::Log)
}
