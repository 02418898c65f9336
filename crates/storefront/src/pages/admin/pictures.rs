//! The administrators' picture management on a product's page: upload (a multipart form, so
//! it works without script), make main, move, change alt text, delete. The catalog checks and
//! re-encodes every upload; this page only carries the bytes there.

use axum::extract::{Multipart, Path};
use axum::http::{Method, StatusCode};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::super::{field, numeric_id, see_other};
use super::report;
use crate::client::{Call, Ctx, Product, Svc};
use crate::view::csrf_field;
use crate::{CsrfForm, PageResult, WebError};

/// The storefront's upload form takes this much (`IMAGE_MAX_BYTES` at the catalog is the
/// limit that counts; this only keeps a form from holding the gateway's memory for longer).
pub const FORM_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// The pictures section of the admin product page.
pub fn section(p: &Product, csrf: &str) -> Markup {
    let base = format!("/admin/products/{}/pictures", p.id);
    html! {
        section aria-labelledby="pictures-title" {
            h2 #pictures-title { "Pictures" }
            @if p.images.is_empty() { p.muted { "No pictures yet." } }
            ol.admin-pictures {
                @for (i, img) in p.images.iter().enumerate() {
                    li.card {
                        img src=(img.thumbnail_url) alt=(img.alt) width=(img.thumbnail_width) height=(img.thumbnail_height);
                        p { @if i == 0 { strong { "Main picture" } } @else { "Picture " (i + 1) } }
                        form.stack method="post" action={ (base) "/" (img.id) "/alt" } {
                            (csrf_field(csrf))
                            label for={ "alt-" (img.id) } { "Alt text" }
                            input id={ "alt-" (img.id) } name="alt" type="text" maxlength="300" required value=(img.alt);
                            button type="submit" { "Save alt text" }
                        }
                        @if i > 0 {
                            form method="post" action={ (base) "/" (img.id) "/main" } {
                                (csrf_field(csrf))
                                button type="submit" { "Make main" }
                            }
                        }
                        form method="post" action={ (base) "/" (img.id) "/delete" } {
                            (csrf_field(csrf))
                            button.danger type="submit" { "Delete" span.visually-hidden { " picture " (i + 1) } }
                        }
                    }
                }
            }
            form.stack method="post" action=(base) enctype="multipart/form-data" {
                (csrf_field(csrf))
                label for="picture" { "Add a picture (JPEG, PNG or WebP)" }
                input #picture name="picture" type="file" accept="image/jpeg,image/png,image/webp" required;
                label for="picture-alt" { "Alt text (what it shows)" }
                input #picture-alt name="alt" type="text" maxlength="300";
                div.field.check {
                    input #picture-main name="main" type="checkbox" value="true";
                    label for="picture-main" { "Make it the main picture" }
                }
                button.primary type="submit" { "Upload" }
            }
        }
    }
}

/// What the upload form sent.
#[derive(Default)]
struct Upload {
    csrf: Option<String>,
    alt: Option<String>,
    main: bool,
    picture: Option<axum::body::Bytes>,
}

async fn read_upload(mut form: Multipart) -> Result<Upload, WebError> {
    let unreadable = |_| WebError::bad_request("The upload could not be read; try again.");
    let mut upload = Upload::default();
    while let Some(part) = form.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::page(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "That picture is too large to upload.")
        } else {
            unreadable(e)
        }
    })? {
        match part.name() {
            Some("_csrf") => upload.csrf = Some(part.text().await.map_err(unreadable)?),
            Some("alt") => upload.alt = Some(part.text().await.map_err(unreadable)?),
            Some("main") => upload.main = part.text().await.map_err(unreadable)? == "true",
            Some("picture") => upload.picture = Some(part.bytes().await.map_err(unreadable)?),
            _ => {}
        }
    }
    Ok(upload)
}

pub async fn upload(ctx: Ctx, Path(raw): Path<String>, form: Multipart) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let upload = read_upload(form).await?;
    if !upload.csrf.as_deref().is_some_and(|c| ctx.csrf_ok(c)) {
        return Err(WebError::csrf());
    }
    let back = see_other(&format!("/admin/products/{id}"));
    let Some(picture) = upload.picture.filter(|p| !p.is_empty()) else {
        ctx.flash(crate::session::FlashKind::Error, "Nothing was uploaded: choose a picture first.");
        return Ok(back);
    };
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(alt) = field(&upload.alt) {
            query.append_pair("alt", &alt);
        }
        if upload.main {
            query.append_pair("main", "true");
        }
        query.finish()
    };
    let path = format!("/products/{id}/images?{query}");
    let call = Call::new(Svc::Catalog, Method::POST, path).raw("application/octet-stream", picture);
    let result = ctx.call::<serde_json::Value>(call).await;
    report(&ctx, result.map(|_| "The picture is added.".to_string()))?;
    Ok(back)
}

#[derive(Debug, Deserialize)]
pub struct AltForm {
    alt: Option<String>,
}

pub async fn set_alt(
    ctx: Ctx,
    Path((raw, image)): Path<(String, String)>,
    CsrfForm(f): CsrfForm<AltForm>,
) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    change(&ctx, id, &image, json!({"alt": field(&f.alt).unwrap_or_default()}), "The alt text is saved.").await
}

pub async fn make_main(
    ctx: Ctx,
    Path((raw, image)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<super::super::Empty>,
) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    change(&ctx, id, &image, json!({"position": 0}), "That is now the main picture.").await
}

pub async fn delete(
    ctx: Ctx,
    Path((raw, image)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<super::super::Empty>,
) -> PageResult {
    ctx.require_admin()?;
    let id = numeric_id(&raw)?;
    let call = Call::new(Svc::Catalog, Method::DELETE, format!("/products/{id}/images/{}", encode(&image)));
    let result = ctx.call_empty(call).await;
    report(&ctx, result.map(|_| "The picture is deleted.".to_string()))?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

async fn change(ctx: &Ctx, id: i64, image: &str, body: serde_json::Value, done: &str) -> PageResult {
    let call = Call::new(Svc::Catalog, Method::PATCH, format!("/products/{id}/images/{}", encode(image))).json(body);
    let result = ctx.call::<serde_json::Value>(call).await;
    report(ctx, result.map(|_| done.to_string()))?;
    Ok(see_other(&format!("/admin/products/{id}")))
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
