//! Sign in (`/` as in seed 004, or `/login`), register, sign out.

use axum::extract::Query;
use axum::http::{Method, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::{Empty, field, see_other};
use crate::client::{Call, Ctx, Svc, TokenResponse, User};
use crate::session::{FlashKind, safe_next};
use crate::view::{alert, csrf_field};
use crate::{CsrfForm, PageResult};

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn root(ctx: Ctx, Query(q): Query<NextQuery>) -> PageResult {
    login_page(ctx, Query(q)).await
}

pub async fn login_page(ctx: Ctx, Query(q): Query<NextQuery>) -> PageResult {
    if ctx.user().is_some() {
        return Ok(see_other(&safe_next(q.next.as_deref())));
    }
    Ok(ctx.page("Sign in", login_form(&ctx, "", q.next.as_deref(), None)))
}

fn login_form(ctx: &Ctx, login: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        section.narrow aria-labelledby="signin-title" {
            h1 #signin-title { "Sign in" }
            @if let Some(e) = error { (alert(e)) }
            form.stack method="post" action="/login" {
                (csrf_field(&ctx.csrf()))
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                label for="login" { "Username or e-mail" }
                input #login name="login" type="text" autocomplete="username" required value=(login)
                    autofocus[login.is_empty()];
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required
                    autofocus[!login.is_empty()];
                button.primary type="submit" { "Sign in" }
            }
            p { "New here? " a href="/register" { "Create an account" } "." }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// Sign-in and registration count against the edge's strict per-address quota, the same one
/// `/api/users/login` counts against, so the web form is no way around it.
async fn credential_quota(ctx: &Ctx) -> Result<(), u64> {
    let edge = &ctx.web.app.edge;
    let decision = edge.limiter.check(&format!("auth:{}", ctx.ip), edge.limits.auth).await;
    if decision.allowed { Ok(()) } else { Err(decision.retry_after.as_secs().max(1)) }
}

fn throttled(secs: u64) -> String {
    format!("Too many sign-in attempts. For your safety, please wait {secs} seconds and try again.")
}

pub async fn login_submit(ctx: Ctx, CsrfForm(f): CsrfForm<LoginForm>) -> PageResult {
    let login = f.login.trim().to_string();
    let next = f.next.as_deref();
    if login.is_empty() || f.password.is_empty() {
        let form = login_form(&ctx, &login, next, Some("Enter your username or e-mail, and your password."));
        return Ok(ctx.page_with(StatusCode::UNPROCESSABLE_ENTITY, "Sign in", form));
    }
    if let Err(secs) = credential_quota(&ctx).await {
        let form = login_form(&ctx, &login, next, Some(&throttled(secs)));
        return Ok(ctx.page_with(StatusCode::TOO_MANY_REQUESTS, "Sign in", form));
    }
    let call = Call::new(Svc::Users, Method::POST, "/users/login")
        .anonymous()
        .json(json!({"login": login, "password": f.password}));
    match ctx.call::<TokenResponse>(call).await {
        Ok(tokens) => {
            let name =
                if tokens.user.name.is_empty() { tokens.user.username.clone() } else { tokens.user.name.clone() };
            ctx.sign_in(tokens).await;
            ctx.flash(FlashKind::Success, format!("Welcome back, {name}."));
            Ok(see_other(&safe_next(next)))
        }
        Err(e) => {
            let (status, message) = match e.status() {
                Some(StatusCode::UNAUTHORIZED) => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username, e-mail or password. Check them and try again.".to_string(),
                ),
                Some(StatusCode::TOO_MANY_REQUESTS) => {
                    (StatusCode::TOO_MANY_REQUESTS, throttled(e.retry_after().unwrap_or(60)))
                }
                Some(s) if s.is_client_error() => (StatusCode::UNPROCESSABLE_ENTITY, e.message()),
                _ => (StatusCode::SERVICE_UNAVAILABLE, e.message()),
            };
            Ok(ctx.page_with(status, "Sign in", login_form(&ctx, &login, next, Some(&message))))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RegisterForm {
    name: Option<String>,
    username: Option<String>,
    email: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn register_page(ctx: Ctx) -> PageResult {
    if ctx.user().is_some() {
        return Ok(see_other("/home"));
    }
    Ok(ctx.page("Create an account", register_form(&ctx, &RegisterForm::default(), None, None)))
}

fn register_form(ctx: &Ctx, f: &RegisterForm, error: Option<&str>, bad_field: Option<&str>) -> Markup {
    let invalid = |name: &str| (bad_field == Some(name)).then_some("true");
    html! {
        section.narrow aria-labelledby="register-title" {
            h1 #register-title { "Create an account" }
            @if let Some(e) = error { (alert(e)) }
            form.stack method="post" action="/register" {
                (csrf_field(&ctx.csrf()))
                label for="name" { "Your name" }
                input #name name="name" type="text" autocomplete="name" maxlength="100" required
                    value=[f.name.as_deref()] aria-invalid=[invalid("name")];
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" minlength="3" maxlength="32"
                    required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]*" aria-describedby="username-hint"
                    value=[f.username.as_deref()] aria-invalid=[invalid("username")];
                p.hint #username-hint { "3 to 32 letters, digits, dots, dashes or underscores." }
                label for="email" { "E-mail" }
                input #email name="email" type="email" autocomplete="email" maxlength="254" required
                    value=[f.email.as_deref()] aria-invalid=[invalid("email")];
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="new-password" minlength="8"
                    maxlength="128" required aria-describedby="password-hint" aria-invalid=[invalid("password")];
                p.hint #password-hint { "At least 8 characters." }
                label for="confirm" { "Repeat the password" }
                input #confirm name="confirm" type="password" autocomplete="new-password" required;
                button.primary type="submit" { "Create account" }
            }
            p { "Already registered? " a href="/login" { "Sign in" } "." }
        }
    }
}

pub async fn register_submit(ctx: Ctx, CsrfForm(f): CsrfForm<RegisterForm>) -> PageResult {
    let fail = |status: StatusCode, message: &str, bad: Option<&str>| -> PageResult {
        let form = f_clone(&f);
        Ok(ctx.page_with(status, "Create an account", register_form(&ctx, &form, Some(message), bad)))
    };
    if f.password != f.confirm {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "The two passwords are not the same.", Some("password"));
    }
    if let Err(secs) = credential_quota(&ctx).await {
        return fail(StatusCode::TOO_MANY_REQUESTS, &throttled(secs), None);
    }
    let (name, username, email) = (field(&f.name), field(&f.username), field(&f.email));
    let call = Call::new(Svc::Users, Method::POST, "/users/register")
        .anonymous()
        .json(json!({"name": name, "username": username, "email": email, "password": f.password}));
    match ctx.call::<User>(call).await {
        Ok(user) => {
            let login = Call::new(Svc::Users, Method::POST, "/users/login")
                .anonymous()
                .json(json!({"login": user.username, "password": f.password}));
            match ctx.call::<TokenResponse>(login).await {
                Ok(tokens) => {
                    ctx.sign_in(tokens).await;
                    ctx.flash(FlashKind::Success, format!("Welcome, {}! Your account is ready.", user.name));
                    Ok(see_other("/home"))
                }
                Err(_) => {
                    ctx.flash(FlashKind::Success, "Your account is ready; please sign in.");
                    Ok(see_other("/login"))
                }
            }
        }
        Err(e) => {
            let bad = e.problem().and_then(|p| p.extensions.get("field")).and_then(|v| v.as_str()).map(str::to_string);
            match e.status() {
                Some(StatusCode::CONFLICT) => fail(
                    StatusCode::CONFLICT,
                    &format!("{} If it is yours, sign in instead.", e.message()),
                    bad.as_deref(),
                ),
                Some(StatusCode::TOO_MANY_REQUESTS) => {
                    fail(StatusCode::TOO_MANY_REQUESTS, &throttled(e.retry_after().unwrap_or(60)), None)
                }
                Some(s) if s.is_client_error() => fail(StatusCode::UNPROCESSABLE_ENTITY, &e.message(), bad.as_deref()),
                _ => fail(StatusCode::SERVICE_UNAVAILABLE, &e.message(), None),
            }
        }
    }
}

fn f_clone(f: &RegisterForm) -> RegisterForm {
    RegisterForm {
        name: f.name.clone(),
        username: f.username.clone(),
        email: f.email.clone(),
        password: String::new(),
        confirm: String::new(),
    }
}

/// Seed 004 signs out with `GET /logout`; here that page asks, and the button POSTs (a link on
/// another site cannot sign anyone out).
pub async fn logout_page(ctx: Ctx) -> PageResult {
    if ctx.user().is_none() {
        return Ok(see_other("/"));
    }
    Ok(ctx.page(
        "Sign out",
        html! {
            section.narrow aria-labelledby="signout-title" {
                h1 #signout-title { "Sign out?" }
                form method="post" action="/logout" {
                    (csrf_field(&ctx.csrf()))
                    button.primary type="submit" { "Sign out" }
                    " "
                    a href="/home" { "Stay signed in" }
                }
            }
        },
    ))
}

pub async fn logout_submit(ctx: Ctx, CsrfForm(_): CsrfForm<Empty>) -> PageResult {
    if let Some(tokens) = ctx.tokens() {
        let call = Call::new(Svc::Users, Method::POST, "/users/logout").json(json!({"refresh_token": tokens.refresh}));
        if let Err(e) = ctx.call_empty(call).await {
            tracing::debug!(error = ?e.0, "logout at the users service failed; the cookie is cleared anyway");
        }
    }
    ctx.sign_out();
    ctx.flash(FlashKind::Success, "You are signed out.");
    Ok(see_other("/"))
}
