//! HTTP handlers for product pictures: administrators upload, arrange and delete; anyone
//! reads, with validators and year-long caching on URLs whose content never changes.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use kit::auth::Auth;
use kit::extract::{ForwardedPrefix, Json, Path, Query};
use kit::problem::ProblemResponses;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Size;
use super::service::{ImageChange, ProductImage};
use crate::AppState;
use crate::error::{CatalogError, Result};
use crate::routes::product_id;
use crate::store::Placement;

/// Uploads may be larger than the JSON bodies every other route takes (`IMAGE_MAX_BYTES`, not
/// `BODY_LIMIT_BYTES`): the upload handler reads the body itself, within the picture limit.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/products/{id}/images", post(upload_image))
        .route("/products/{id}/images/{image}", patch(update_image).delete(delete_image))
        .route("/products/{id}/images/{image}/{file}", get(get_rendition))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// What the picture shows (defaults to the product's name).
    #[param(max_length = 300)]
    pub alt: Option<String>,
    /// Make it the main picture (default: it goes last).
    pub main: Option<bool>,
}

/// An upload's body as the OpenAPI document describes it: the file's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PictureBytes(#[allow(dead_code)] Vec<u8>);

#[utoipa::path(post, path = "/products/{id}/images", tag = "products", security(("bearer" = [])),
    params(("id" = i64, Path), UploadQuery),
    request_body(content = PictureBytes, description = "The picture's bytes: JPEG, PNG or WebP (told from the bytes)",
        content_type = "application/octet-stream"),
    responses((status = 201, description = "Stored as a thumbnail and a display size, without metadata (administrators)",
        body = ProductImage), ProblemResponses))]
pub async fn upload_image(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    prefix: ForwardedPrefix,
    req: Request,
) -> Result<Response> {
    let id = product_id(&id)?;
    let max = state.catalog.image_limits().max_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // Far too large to read through: refused at once (a smaller excess is read and dropped).
    if let Some(size) = declared.filter(|size| *size > max + DRAIN_BYTES) {
        return Err(kit::Problem::from(super::ImageRefusal::TooLarge { size, max }).into());
    }
    let upload = read_upload(req.into_body(), max).await?;
    let placement = if q.main.unwrap_or(false) { Placement::Main } else { Placement::Last };
    let row = state.catalog.add_image(&caller, id, upload, q.alt.as_deref(), placement).await?;
    let image = state.catalog.image_view(&row, &prefix.0);
    let mut res = (StatusCode::CREATED, Json(&image)).into_response();
    if let Ok(location) = HeaderValue::from_str(&image.url) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

/// How much more than the limit is read (and thrown away) before a 413 is answered.
const DRAIN_BYTES: usize = 32 * 1024 * 1024;

/// Reads an upload of at most `max` bytes. A larger one is read on to its end (up to
/// [`DRAIN_BYTES`] more) before it is refused: its sender, often a proxy still streaming it,
/// then reads the 413 instead of a connection reset under its feet.
async fn read_upload(mut body: Body, max: usize) -> Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| kit::Problem::bad_request("The upload was cut off."))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen <= max {
            kept.extend_from_slice(&data);
        } else if seen > max + DRAIN_BYTES {
            break;
        }
    }
    if seen > max {
        return Err(kit::Problem::from(super::ImageRefusal::TooLarge { size: seen, max }).into());
    }
    Ok(kept.freeze())
}

#[utoipa::path(patch, path = "/products/{id}/images/{image}", tag = "products", security(("bearer" = [])),
    params(("id" = i64, Path), ("image" = String, Path)), request_body = ImageChange,
    responses((status = 200, description = "Alt text or place changed (administrators)", body = ProductImage), ProblemResponses))]
pub async fn update_image(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, image)): Path<(String, String)>,
    prefix: ForwardedPrefix,
    Json(change): Json<ImageChange>,
) -> Result<Json<ProductImage>> {
    let row = state.catalog.update_image(&caller, product_id(&id)?, &image, change).await?;
    Ok(Json(state.catalog.image_view(&row, &prefix.0)))
}

#[utoipa::path(delete, path = "/products/{id}/images/{image}", tag = "products", security(("bearer" = [])),
    params(("id" = i64, Path), ("image" = String, Path)),
    responses((status = 204, description = "Deleted (administrators)"), ProblemResponses))]
pub async fn delete_image(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, image)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.catalog.delete_image(&caller, product_id(&id)?, &image).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/products/{id}/images/{image}/{file}", tag = "products",
    params(("id" = i64, Path), ("image" = String, Path), ("file" = String, Path, description = "`thumb.jpg` or `display.jpg`")),
    responses((status = 200, description = "The picture (JPEG); public, cacheable for a year", content_type = "image/jpeg"),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"), ProblemResponses))]
pub async fn get_rendition(
    State(state): State<AppState>,
    Path((id, image, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let id = product_id(&id)?;
    let size = Size::from_file_name(&file).ok_or_else(|| {
        CatalogError::NotFound(format!("No picture file {}.", file.chars().take(40).collect::<String>()))
    })?;
    // The id is a digest of the upload and a size never changes: the tag is known before
    // the bytes are read, so a revalidation reads no picture, only whether it still exists
    // (a 304 must never vouch for a picture that was deleted).
    let etag = format!("\"{image}-{}\"", file.trim_end_matches(".jpg"));
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if if_none_match(&headers, &etag) {
        state.catalog.require_image(id, &image).await?;
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        insert_validators(res.headers_mut(), &etag, cache);
        return Ok(res);
    }
    let jpeg = state.catalog.image_bytes(id, &image, size).await?;
    let mut res = Response::new(Body::from(jpeg));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    insert_validators(res.headers_mut(), &etag, cache);
    Ok(res)
}

fn insert_validators(headers: &mut HeaderMap, etag: &str, cache: HeaderValue) {
    if let Ok(tag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::CACHE_CONTROL, cache);
}

/// `If-None-Match` lists this tag (or `*`); weak tags compare equal, as RFC 9110 says for GET.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revalidation_matches_strong_weak_and_any() {
        let tag = "\"abc-thumb\"";
        for sent in ["\"abc-thumb\"", "W/\"abc-thumb\"", "\"x\", \"abc-thumb\"", "*"] {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(sent).unwrap());
            assert!(if_none_match(&h, tag), "{sent}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc-display\""));
        assert!(!if_none_match(&h, tag));
        assert!(!if_none_match(&HeaderMap::new(), tag));
    }
}
