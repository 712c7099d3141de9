//! Who is asking for an operation: the [`Caller`] every operation of the service
//! layer takes, with the role and the applications it may act on.

use std::fmt;
use std::net::IpAddr;
pub use wharf_domain::access::Role;

use super::{OpError, OpResult};

/// Who is behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A request to `/api/v1` with an API token.
    ApiToken { id: String, name: Option<String> },
    /// A console page or form of a session opened with an API token.
    Console { token_id: String },
    /// An agent, by the instance its credential belongs to.
    Agent { instance_id: String },
    /// An agent registering: who it is is known only once the operation has
    /// checked the registration token of its request.
    Registering,
    /// The server itself: the release driver, scaling hooks and catch-ups.
    Server,
}

/// Who asks for an operation, with which role, for which applications, and from
/// where. Every operation takes one; `require` is the one check an operation
/// makes of it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub role: Role,
    /// The applications the caller may act on; `None` is all of them.
    pub apps: Option<Vec<String>>,
    /// The request's source address, when there was a request.
    pub source: Option<IpAddr>,
}

impl Caller {
    /// A caller with an API token. Every token is an admin token so far.
    pub fn api_token(id: String, role: Role, source: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::ApiToken { id, name: None },
            role,
            apps: None,
            source,
        }
    }

    /// A console session opened with the token `token_id`.
    pub fn console(token_id: String, role: Role, source: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::Console { token_id },
            role,
            apps: None,
            source,
        }
    }

    /// An agent: it acts only on its own instance's work, never through a role,
    /// so it has the weakest role and no application.
    pub fn agent(instance_id: String, source: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::Agent { instance_id },
            role: Role::Viewer,
            apps: Some(Vec::new()),
            source,
        }
    }

    /// An agent registering with a registration token, from `source`.
    pub fn registering(source: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::Registering,
            role: Role::Viewer,
            apps: Some(Vec::new()),
            source,
        }
    }

    /// The server itself (the driver, scaling): everything, everywhere.
    pub fn server() -> Self {
        Self {
            actor: Actor::Server,
            role: Role::Admin,
            apps: None,
            source: None,
        }
    }

    /// Whether the caller may act on `app` (`None`: on no one application, such as
    /// a registry or the list of all instances).
    pub fn may_touch(&self, app: Option<&str>) -> bool {
        match (&self.apps, app) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(apps), Some(app)) => apps.iter().any(|a| a == app),
        }
    }

    /// Refuses the call unless the caller has `needs` (or a stronger role) and may
    /// act on `app`. Every caller is an admin of all applications today, so this
    /// refuses nothing yet; it is the place where scoped tokens will be checked.
    pub fn require(&self, needs: Role, app: Option<&str>) -> OpResult<()> {
        if self.role.allows(needs) && (self.apps.is_none() || self.may_touch(app)) {
            Ok(())
        } else {
            Err(OpError::Forbidden { needs })
        }
    }

    /// Refuses the call unless the caller has `needs` or a stronger role, whatever
    /// its applications: for reads of what belongs to no application, and for
    /// lists, which then show only what [`Caller::may_touch`] allows.
    pub fn require_role(&self, needs: Role) -> OpResult<()> {
        if self.role.allows(needs) {
            Ok(())
        } else {
            Err(OpError::Forbidden { needs })
        }
    }

    /// Registration is open to anyone with a registration token (which the
    /// operation checks), but it is not something a token or the server does.
    pub fn require_registration(&self) -> OpResult<()> {
        match self.actor {
            Actor::Registering => Ok(()),
            _ => Err(OpError::Forbidden { needs: Role::Admin }),
        }
    }

    /// The instance of an agent caller.
    pub fn instance_id(&self) -> Option<&str> {
        match &self.actor {
            Actor::Agent { instance_id } => Some(instance_id),
            _ => None,
        }
    }
}

/// Who the caller is, for logs: the token's id (never its secret), the
/// instance, or the server, and where the request came from.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.actor {
            Actor::ApiToken {
                id,
                name: Some(name),
            } => write!(f, "token {name} ({id})")?,
            Actor::ApiToken { id, name: None } => write!(f, "token {id}")?,
            Actor::Console { token_id } => write!(f, "console session of token {token_id}")?,
            Actor::Agent { instance_id } => write!(f, "agent of instance {instance_id}")?,
            Actor::Registering => f.write_str("an agent registering")?,
            Actor::Server => f.write_str("the server")?,
        }
        match self.source {
            Some(source) => write!(f, " from {source}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_token_may_do_everything_and_a_scoped_viewer_little() {
        let admin = Caller::api_token("tok_1".into(), Role::Admin, None);
        assert!(admin.require(Role::Admin, None).is_ok());
        assert!(admin.require(Role::Deployer, Some("shop")).is_ok());
        let viewer = Caller {
            apps: Some(vec!["shop".into()]),
            ..Caller::api_token("tok_2".into(), Role::Viewer, None)
        };
        assert!(viewer.require(Role::Viewer, Some("shop")).is_ok());
        assert!(matches!(
            viewer.require(Role::Viewer, Some("blog")),
            Err(OpError::Forbidden {
                needs: Role::Viewer
            })
        ));
        assert!(matches!(
            viewer.require(Role::Deployer, Some("shop")),
            Err(OpError::Forbidden {
                needs: Role::Deployer
            })
        ));
        assert!(Caller::server().require(Role::Admin, None).is_ok());
        let agent = Caller::agent("i-1".into(), None);
        assert_eq!(agent.instance_id(), Some("i-1"));
        assert!(agent.require(Role::Viewer, Some("shop")).is_err());
    }

    #[test]
    fn a_caller_is_logged_by_id_and_source_never_more() {
        let caller = Caller::api_token("tok_1".into(), Role::Admin, "10.0.0.7".parse().ok());
        assert_eq!(caller.to_string(), "token tok_1 from 10.0.0.7");
        assert_eq!(Caller::server().to_string(), "the server");
        let console = Caller::console("tok_2".into(), Role::Admin, None);
        assert_eq!(console.to_string(), "console session of token tok_2");
    }
}
