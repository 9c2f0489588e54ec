//! The vocabulary both profile kinds share: what a kind is called on the wire, in metrics
//! and in paths, and what every consumer (operator, agent, CLI) reads of a profile object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{AppArmorProfile, ProfileKind, ProfileState, ProfileStatus, SeccompProfile};

impl ProfileKind {
    /// Both kinds, in the order reports list them.
    pub const ALL: [ProfileKind; 2] = [ProfileKind::AppArmorProfile, ProfileKind::SeccompProfile];

    /// The kind's name in the API (`kind:`), in Events and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::AppArmorProfile => "AppArmorProfile",
            ProfileKind::SeccompProfile => "SeccompProfile",
        }
    }

    /// The kind's short word: metric labels (`kind="apparmor"`), the CLI's columns.
    pub fn slug(self) -> &'static str {
        match self {
            ProfileKind::AppArmorProfile => "apparmor",
            ProfileKind::SeccompProfile => "seccomp",
        }
    }

    /// The kind named by [`ProfileKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What is read of a profile object whatever its kind.
pub trait ProfileObject: kube::Resource<DynamicType = ()> {
    const KIND: ProfileKind;
    fn profile_status(&self) -> Option<&ProfileStatus>;
    fn profile_status_mut(&mut self) -> Option<&mut ProfileStatus>;
    /// The nodes it targets (`spec.nodeSelector`; none: every node).
    fn selector(&self) -> Option<&LabelSelector>;
    fn state(&self) -> ProfileState;
}

impl ProfileObject for SeccompProfile {
    const KIND: ProfileKind = ProfileKind::SeccompProfile;
    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
    fn profile_status_mut(&mut self) -> Option<&mut ProfileStatus> {
        self.status.as_mut()
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.node_selector.as_ref()
    }
    fn state(&self) -> ProfileState {
        self.spec.state
    }
}

impl ProfileObject for AppArmorProfile {
    const KIND: ProfileKind = ProfileKind::AppArmorProfile;
    fn profile_status(&self) -> Option<&ProfileStatus> {
        self.status.as_ref()
    }
    fn profile_status_mut(&mut self) -> Option<&mut ProfileStatus> {
        self.status.as_mut()
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.node_selector.as_ref()
    }
    fn state(&self) -> ProfileState {
        self.spec.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_named_as_it_serializes_and_found_by_that_name() {
        for kind in ProfileKind::ALL {
            assert_eq!(crate::wire_name(kind), kind.name());
            assert_eq!(ProfileKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ProfileKind::from_name("Pod"), None);
        assert_eq!(ProfileKind::SeccompProfile.slug(), "seccomp");
        assert_eq!(ProfileKind::AppArmorProfile.slug(), "apparmor");
    }
}
