//! What a token lets its holder do. A token names a role and the permissions it claims; a
//! permission holds only when the token claims it *and* the role allows it, so a token can
//! narrow its role's rights but never widen them (a leaked key should not mint super-users).

use kit::Problem;
use kit::auth::{Principal, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    OrderCreate,
    OrderView,
    OrderCancel,
    OrderManage,
    ProfileEdit,
    UserCreate,
    UserDelete,
    UserManage,
    ProductManage,
    StockReserve,
    SystemAdmin,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::OrderCreate,
        Permission::OrderView,
        Permission::OrderCancel,
        Permission::OrderManage,
        Permission::ProfileEdit,
        Permission::UserCreate,
        Permission::UserDelete,
        Permission::UserManage,
        Permission::ProductManage,
        Permission::StockReserve,
        Permission::SystemAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrderCreate => "order.create",
            Permission::OrderView => "order.view",
            Permission::OrderCancel => "order.cancel",
            Permission::OrderManage => "order.manage",
            Permission::ProfileEdit => "profile.edit",
            Permission::UserCreate => "user.create",
            Permission::UserDelete => "user.delete",
            Permission::UserManage => "user.manage",
            Permission::ProductManage => "product.manage",
            Permission::StockReserve => "stock.reserve",
            Permission::SystemAdmin => "system.admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// What a role may do. Services get only what service-to-service calls need.
    pub fn of_role(role: Role) -> &'static [Permission] {
        use Permission::*;
        match role {
            Role::User => &[OrderCreate, OrderView, ProfileEdit],
            Role::Admin => Permission::ALL,
            Role::Service => &[StockReserve],
        }
    }

    /// The names a token of `role` is issued with.
    pub fn names_of_role(role: Role) -> Vec<String> {
        Permission::of_role(role).iter().map(|p| p.as_str().to_string()).collect()
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Permission checks on whoever a request's token names.
pub trait Grants {
    fn has(&self, permission: Permission) -> bool;

    /// `403` naming the permission that is missing.
    fn require(&self, permission: Permission) -> Result<(), Problem> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!("This needs the permission {}.", permission.as_str()))
                .with("required_permission", permission.as_str()))
        }
    }

    /// The names of every permission that holds, in a stable order.
    fn permissions(&self) -> Vec<&'static str>;
}

impl Grants for Principal {
    fn has(&self, permission: Permission) -> bool {
        Permission::of_role(self.role).contains(&permission) && self.claims_permission(permission.as_str())
    }

    fn permissions(&self) -> Vec<&'static str> {
        Permission::ALL.iter().filter(|p| self.has(**p)).map(|p| p.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use kit::auth::Claims;

    use super::*;

    fn principal(role: &str, perms: &[&str]) -> Principal {
        let claims = Claims {
            sub: "0190c8a2-6b1e-7cc4-9a51-3f1f5d7e2a10".into(),
            username: Some("bob".into()),
            role: role.into(),
            perms: perms.iter().map(|s| s.to_string()).collect(),
            iss: "ordermesh".into(),
            aud: "ordermesh".into(),
            exp: kit::auth::unix_now() + 60,
            iat: kit::auth::unix_now(),
            nbf: None,
            jti: "j1".into(),
            sid: Some("s1".into()),
        };
        Principal::from_claims(&claims).unwrap()
    }

    #[test]
    fn a_token_cannot_claim_more_than_its_role_allows() {
        let p = principal("user", &["order.create", "order.cancel", "system.admin"]);
        assert!(p.has(Permission::OrderCreate));
        assert!(!p.has(Permission::OrderCancel));
        assert!(!p.has(Permission::SystemAdmin));
        assert_eq!(p.permissions(), ["order.create"]);
    }

    #[test]
    fn a_missing_permission_is_named_in_the_refusal() {
        let p = principal("user", &["order.view"]);
        assert!(p.require(Permission::OrderView).is_ok());
        let refused = p.require(Permission::OrderManage).unwrap_err();
        assert_eq!(refused.status, 403);
    }
}
