//! Who asked: an actor and the delegation chain it acts through.

use serde::{Deserialize, Serialize};

text_enum! {
    /// What kind of principal an actor is.
    #[non_exhaustive]
    pub enum ActorKind {
        /// A human user.
        User => "user",
        /// A service account.
        Service => "service",
        /// An autonomous agent.
        Agent => "agent",
        /// The system itself (sweepers, schedulers).
        System => "system",
    }
}

/// One principal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// What kind of principal this is.
    pub kind: ActorKind,
    /// Its identifier, compared byte-exact.
    pub id: String,
}

impl Actor {
    /// An actor of any kind.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self { kind, id: id.into() }
    }

    /// A human user.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new(ActorKind::User, id)
    }

    /// A service account.
    pub fn service(id: impl Into<String>) -> Self {
        Self::new(ActorKind::Service, id)
    }

    /// The system itself.
    pub fn system(id: impl Into<String>) -> Self {
        Self::new(ActorKind::System, id)
    }

    /// The `kind:id` form used as a key in analytics counts.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// The actor that performed an action, and on whose behalf.
///
/// `delegation` lists the principals the actor acts for, outermost first
/// (RFC 8693 `act` order); it is empty for direct action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// Who acted.
    pub actor: Actor,
    /// On whose behalf, outermost first.
    #[serde(default)]
    pub delegation: Vec<Actor>,
}

impl Principal {
    /// A principal acting directly.
    pub fn direct(actor: Actor) -> Self {
        Self { actor, delegation: Vec::new() }
    }

    /// A principal acting on behalf of `chain` (outermost first).
    pub fn delegated(actor: Actor, chain: Vec<Actor>) -> Self {
        Self { actor, delegation: chain }
    }
}

impl From<Actor> for Principal {
    fn from(actor: Actor) -> Self {
        Self::direct(actor)
    }
}
