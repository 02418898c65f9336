//! The administrators' user list, and changing a user's role.

use axum::extract::{Path, Query};
use axum::http::Method;
use kit::auth::Role;
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::super::{field, query_string, see_other};
use super::{admin_nav, page_number, report};
use crate::client::{Call, Ctx, Paged, Svc, User};
use crate::view::{csrf_field, head_row, pagination, when};
use crate::{CsrfForm, PageResult, WebError};

#[derive(Debug, Deserialize)]
pub struct UsersQuery {
    q: Option<String>,
    role: Option<String>,
    page: Option<String>,
}

pub async fn users(ctx: Ctx, Query(q): Query<UsersQuery>) -> PageResult {
    let me = ctx.require_admin()?;
    let page = page_number(&q.page);
    let text: Option<String> = field(&q.q).map(|t| t.chars().take(100).collect());
    let role = field(&q.role).filter(|r| r == "admin" || r == "user");
    let query = query_string(&[
        ("per_page", Some("20")),
        ("page", Some(&page.to_string())),
        ("q", text.as_deref()),
        ("role", role.as_deref()),
    ]);
    let list: Paged<User> = ctx.call(Call::get(Svc::Users, format!("/users?{query}"))).await?;
    let csrf = ctx.csrf();
    let body = html! {
        h1 { "Users" }
        (admin_nav("/admin/users"))
        form.search role="search" method="get" action="/admin/users" {
            div.field {
                label for="q" { "Search users" }
                input #q type="search" name="q" maxlength="100" value=[text.as_deref()];
            }
            div.field {
                label for="role" { "Role" }
                select #role name="role" {
                    option value="" { "Any" }
                    option value="admin" selected[role.as_deref() == Some("admin")] { "admin" }
                    option value="user" selected[role.as_deref() == Some("user")] { "user" }
                }
            }
            button type="submit" { "Filter" }
        }
        div.table-wrap {
            table {
                caption.visually-hidden { "Users" }
                (head_row(&["Username", "Name", "E-mail", "Joined", "Role"]))
                tbody {
                    @for u in &list.items {
                        tr {
                            th scope="row" { (u.username) }
                            td { (u.name) }
                            td { (u.email.as_deref().unwrap_or("—")) }
                            td { (when(&u.created_at)) }
                            td {
                                form.inline method="post" action={ "/admin/users/" (u.id) "/role" } {
                                    (csrf_field(&csrf))
                                    label.visually-hidden for={ "role-" (u.id) } { "Role of " (u.username) }
                                    select id={ "role-" (u.id) } name="role" disabled[u.id == me.subject] {
                                        option value="user" selected[u.role == Role::User] { "user" }
                                        option value="admin" selected[u.role == Role::Admin] { "admin" }
                                    }
                                    @if u.id != me.subject {
                                        button type="submit" { "Change" span.visually-hidden { " role of " (u.username) } }
                                    } @else {
                                        span.muted { " (you)" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pagination(
            "/admin/users",
            &[("q", text.clone().unwrap_or_default()), ("role", role.clone().unwrap_or_default())],
            list.page,
            list.total_pages,
        ))
    };
    Ok(ctx.page("Users", body))
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn set_role(ctx: Ctx, Path(id): Path<String>, CsrfForm(f): CsrfForm<RoleForm>) -> PageResult {
    ctx.require_admin()?;
    if f.role != "admin" && f.role != "user" {
        return Err(WebError::bad_request("A role is admin or user."));
    }
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(WebError::not_found("There is no such user."));
    }
    let call = Call::new(Svc::Users, Method::PUT, format!("/users/{id}")).json(json!({"role": f.role}));
    let result = ctx.call::<User>(call).await;
    report(&ctx, result.map(|u| format!("{} is now {}; their sessions were signed out.", u.username, u.role)))?;
    Ok(see_other("/admin/users"))
}
