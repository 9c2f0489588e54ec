//! The two profile kinds: what each is called on the wire, in metrics and in messages, and
//! what every consumer (operator, agent, CLI) reads of a profile object whatever its kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AppArmorProfile, ProfileState, ProfileStatus, SeccompProfile};

/// The two profile kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProfileKind {
    AppArmorProfile,
    SeccompProfile,
}

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

/// Both kinds keep these in the same fields.
macro_rules! profile_object {
    ($($ty:ident),*) => {$(
        impl ProfileObject for $ty {
            const KIND: ProfileKind = ProfileKind::$ty;
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
    )*};
}

profile_object!(SeccompProfile, AppArmorProfile);

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

    #[test]
    fn names_are_spelled_as_the_api_and_the_chart_expect() {
        assert_eq!(crate::api_version(), "palisade.dev/v1alpha1");
        assert_eq!(crate::agent_lease_name("n1"), "palisade-agent-n1");
        assert_eq!(crate::agent_lease_selector(), "app.kubernetes.io/name=palisade-agent");
    }
}
