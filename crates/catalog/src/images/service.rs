//! What the catalog does with pictures, independent of HTTP.

use bytes::Bytes;
use kit::auth::Principal;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ImageLimits, Size, process};
use crate::error::{CatalogError, Result};
use crate::service::{Catalog, Product};
use crate::store::{ImageRow, Placement, ProductRow};

pub use api::catalog::ProductImage;

/// A picture as clients see it, its URLs under `prefix`.
fn image_view(row: &ImageRow, prefix: &str) -> ProductImage {
    let base = format!("{prefix}/products/{}/images/{}", row.product_id, row.id);
    ProductImage {
        id: row.id.clone(),
        alt: row.alt.clone(),
        main: row.position == 0,
        url: format!("{base}/{}", Size::Display.file_name()),
        width: row.width,
        height: row.height,
        thumbnail_url: format!("{base}/{}", Size::Thumb.file_name()),
        thumbnail_width: row.thumb_width,
        thumbnail_height: row.thumb_height,
    }
}

/// A change to one picture: its alt text, its place among the product's pictures, or both.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageChange {
    #[schema(min_length = 1, max_length = 300)]
    pub alt: Option<String>,
    /// 0 makes it the main picture.
    #[schema(minimum = 0, maximum = 100)]
    pub position: Option<u32>,
}

/// Alt text: what the picture shows, for those who cannot see it. Short, one line.
pub fn parse_alt(alt: &str) -> Result<String> {
    let alt = alt.trim();
    if alt.is_empty() || alt.chars().count() > 300 || alt.chars().any(char::is_control) {
        return Err(CatalogError::invalid("alt", "must be 1 to 300 characters on one line"));
    }
    Ok(alt.to_string())
}

/// A picture id as the catalog makes them (24 hex digits); anything else names nothing.
pub fn parse_image_id(raw: &str) -> Option<&str> {
    (raw.len() == 24 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(raw)
}

impl Catalog {
    pub fn image_limits(&self) -> &ImageLimits {
        &self.config.images
    }

    /// Checks an upload, makes its renditions (on a blocking thread: decoding and resizing
    /// take milliseconds of CPU) and stores them.
    pub async fn add_image(
        &self,
        caller: &Principal,
        product_id: i64,
        upload: Bytes,
        alt: Option<&str>,
        placement: Placement,
    ) -> Result<ImageRow> {
        Self::require_admin(caller)?;
        let product = self.store.get(product_id).await?.ok_or_else(|| no_product(product_id))?;
        let alt = match alt.map(str::trim).filter(|a| !a.is_empty()) {
            Some(alt) => parse_alt(alt)?,
            None => product.name.clone(),
        };
        let limits = self.config.images;
        let renditions = tokio::task::spawn_blocking(move || process(&upload, &limits))
            .await
            .map_err(|e| CatalogError::Internal(format!("picture processing: {e}")))?
            .map_err(kit::Problem::from)?;
        let row = self.store.add_image(product_id, &renditions, &alt, placement, limits.per_product).await?;
        tracing::info!(product_id, image = row.id, by = caller.subject, "picture added");
        Ok(row)
    }

    pub async fn update_image(
        &self,
        caller: &Principal,
        product_id: i64,
        image_id: &str,
        change: ImageChange,
    ) -> Result<ImageRow> {
        Self::require_admin(caller)?;
        let image_id = parse_image_id(image_id).ok_or_else(|| no_image(product_id, image_id))?;
        let alt = change.alt.as_deref().map(parse_alt).transpose()?;
        if alt.is_none() && change.position.is_none() {
            return Err(CatalogError::invalid("body", "needs alt, position or both"));
        }
        self.store.update_image(product_id, image_id, alt.as_deref(), change.position.map(|p| p as usize)).await
    }

    pub async fn delete_image(&self, caller: &Principal, product_id: i64, image_id: &str) -> Result<()> {
        Self::require_admin(caller)?;
        let image_id = parse_image_id(image_id).ok_or_else(|| no_image(product_id, image_id))?;
        self.store.delete_image(product_id, image_id).await?;
        tracing::info!(product_id, image = image_id, by = caller.subject, "picture deleted");
        Ok(())
    }

    /// One size of a picture. Pictures of deactivated products stay readable: past orders
    /// and caches still point at them, and they are no secret.
    pub async fn image_bytes(&self, product_id: i64, image_id: &str, size: Size) -> Result<Vec<u8>> {
        let image_id = parse_image_id(image_id).ok_or_else(|| no_image(product_id, image_id))?;
        self.store.image_bytes(product_id, image_id, size).await?.ok_or_else(|| no_image(product_id, image_id))
    }

    pub fn image_view(&self, row: &ImageRow, prefix: &str) -> ProductImage {
        image_view(row, prefix)
    }

    /// Whether the product has this picture (404 if not), without reading its bytes.
    pub async fn require_image(&self, product_id: i64, image_id: &str) -> Result<()> {
        let image_id = parse_image_id(image_id).ok_or_else(|| no_image(product_id, image_id))?;
        if self.store.has_image(product_id, image_id).await? { Ok(()) } else { Err(no_image(product_id, image_id)) }
    }

    /// Products as clients see them, with their pictures (one query for the whole page).
    pub async fn products(&self, rows: &[ProductRow], prefix: &str) -> Result<Vec<Product>> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let images = self.store.images_of(&ids).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let mut product = Product::from(row);
                product.images =
                    images.iter().filter(|i| i.product_id == row.id).map(|i| image_view(i, prefix)).collect();
                product
            })
            .collect())
    }

    pub async fn product(&self, row: &ProductRow, prefix: &str) -> Result<Product> {
        let mut products = self.products(std::slice::from_ref(row), prefix).await?;
        products.pop().ok_or_else(|| CatalogError::Internal("a product went missing".into()))
    }
}

fn no_product(id: i64) -> CatalogError {
    CatalogError::NotFound(format!("No product {id}."))
}

/// 404 for a picture; the id is shown cut short, as it may be whatever a path held.
pub(crate) fn no_image(product_id: i64, image_id: &str) -> CatalogError {
    let shown: String = image_id.chars().take(40).collect();
    CatalogError::NotFound(format!("Product {product_id} has no picture {shown}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_text_is_one_short_line() {
        assert_eq!(parse_alt("  A red mug  ").unwrap(), "A red mug");
        assert!(parse_alt("   ").is_err());
        assert!(parse_alt("two\nlines").is_err());
        assert!(parse_alt(&"x".repeat(301)).is_err());
    }

    #[test]
    fn only_ids_the_catalog_makes_name_a_picture() {
        assert!(parse_image_id("0123456789abcdef01234567").is_some());
        for bad in ["", "0123456789ABCDEF01234567", "../../etc/passwd", "0123456789abcdef012345678"] {
            assert!(parse_image_id(bad).is_none(), "{bad}");
        }
    }
}
