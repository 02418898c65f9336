//! The user's own account: view and edit, change the password.

use axum::http::{Method, StatusCode};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::{field, see_other};
use crate::client::{Call, Ctx, Svc, User, lock};
use crate::session::FlashKind;
use crate::view::{csrf_field, when};
use crate::{CsrfForm, PageResult};

pub async fn show(ctx: Ctx) -> PageResult {
    ctx.require_user()?;
    let me: User = ctx.call(Call::get(Svc::Users, "/users/me")).await?;
    let csrf = ctx.csrf();
    let body = html! {
        h1 { "Your profile" }
        dl.facts {
            dt { "Username" } dd { (me.username) }
            dt { "Name" } dd { (me.name) }
            dt { "E-mail" } dd { (me.email.as_deref().unwrap_or("—")) }
            dt { "Role" } dd { (me.role) }
            dt { "Member since" } dd { (when(&me.created_at)) }
        }
        div.columns {
            section aria-labelledby="edit-title" {
                h2 #edit-title { "Edit your details" }
                form.stack method="post" action="/profile" {
                    (csrf_field(&csrf))
                    label for="name" { "Name" }
                    input #name name="name" type="text" autocomplete="name" maxlength="100" required value=(me.name);
                    label for="email" { "E-mail" }
                    input #email name="email" type="email" autocomplete="email" maxlength="254"
                        value=[me.email.as_deref()];
                    button.primary type="submit" { "Save" }
                }
            }
            section aria-labelledby="password-title" {
                h2 #password-title { "Change your password" }
                form.stack method="post" action="/profile/password" {
                    (csrf_field(&csrf))
                    label for="current_password" { "Current password" }
                    input #current_password name="current_password" type="password" autocomplete="current-password" required;
                    label for="new_password" { "New password" }
                    input #new_password name="password" type="password" autocomplete="new-password" minlength="8"
                        maxlength="128" required;
                    label for="confirm" { "Repeat the new password" }
                    input #confirm name="confirm" type="password" autocomplete="new-password" required;
                    button.primary type="submit" { "Change password" }
                }
            }
        }
    };
    Ok(ctx.page("Profile", body))
}

#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    name: Option<String>,
    email: Option<String>,
}

pub async fn update(ctx: Ctx, CsrfForm(f): CsrfForm<ProfileForm>) -> PageResult {
    ctx.require_user()?;
    let mut body = serde_json::Map::new();
    if let Some(n) = field(&f.name) {
        body.insert("name".into(), json!(n));
    }
    if let Some(e) = field(&f.email) {
        body.insert("email".into(), json!(e));
    }
    match ctx.call::<User>(Call::new(Svc::Users, Method::PUT, "/users/me").json(body)).await {
        Ok(user) => {
            {
                let mut st = lock(&ctx.shared);
                st.session.name = Some(user.name.chars().take(100).collect());
                st.session_dirty = true;
            }
            ctx.flash(FlashKind::Success, "Your details are saved.");
        }
        Err(e) if e.status().is_some_and(|s| s.is_client_error() && s != StatusCode::UNAUTHORIZED) => {
            ctx.flash(FlashKind::Error, format!("Nothing was saved: {}", e.message()));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/profile"))
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change_password(ctx: Ctx, CsrfForm(f): CsrfForm<PasswordForm>) -> PageResult {
    ctx.require_user()?;
    if f.password != f.confirm {
        ctx.flash(FlashKind::Error, "The two new passwords are not the same; nothing was changed.");
        return Ok(see_other("/profile"));
    }
    let call = Call::new(Svc::Users, Method::PUT, "/users/me")
        .json(json!({"password": f.password, "current_password": f.current_password}));
    match ctx.call::<User>(call).await {
        Ok(_) => ctx.flash(FlashKind::Success, "Your password is changed. Your other sessions were signed out."),
        Err(e) if e.status().is_some_and(|s| s.is_client_error() && s != StatusCode::UNAUTHORIZED) => {
            ctx.flash(FlashKind::Error, format!("The password was not changed: {}", e.message()));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/profile"))
}
