//! What every consumer (operator, agent, CLI) reads of a profile object, whatever its kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{AppArmorProfile, ProfileKind, ProfileState, ProfileStatus, SeccompProfile};

/// What is read of a profile object whatever its kind.
pub trait ProfileObject: kube::Resource<DynamicType = ()> {
    const KIND: ProfileKind;
    fn profile_status(&self) -> Option<&ProfileStatus>;
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
}
