//! Product pictures in the catalog's own database, so they follow the service to PostgreSQL
//! and to every instance. Each write first bumps the product's version: that takes the
//! product's row lock (two administrators arranging one product's pictures at once queue
//! instead of interleaving) and changes the product's ETag, as any other edit does.

use kit::db::{now_ms, placeholders};
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::error::{CatalogError, Result};
use crate::images::{Renditions, Size, no_image};

/// A picture's description, without its bytes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRow {
    pub product_id: i64,
    pub id: String,
    pub position: i64,
    pub alt: String,
    pub width: i64,
    pub height: i64,
    pub thumb_width: i64,
    pub thumb_height: i64,
}

const IMAGE_COLUMNS: &str = "product_id, id, position, alt, width, height, thumb_width, thumb_height";

/// Where an added picture goes among the product's others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// First: the product's main picture.
    Main,
    Last,
}

impl Store {
    /// Adds a picture; refuses a product's `max`-plus-first picture and the same file twice.
    pub async fn add_image(
        &self,
        product_id: i64,
        renditions: &Renditions,
        alt: &str,
        placement: Placement,
        max: usize,
    ) -> Result<ImageRow> {
        let mut tx = self.db.begin_write().await?;
        touch_product(&mut tx, product_id).await?;
        let mut ids = image_order(&mut tx, product_id).await?;
        if ids.contains(&renditions.digest) {
            return Err(CatalogError::Conflict("This picture is already on the product.".into()));
        }
        if ids.len() >= max {
            return Err(CatalogError::Conflict(format!(
                "A product has at most {max} pictures; delete one before adding another."
            )));
        }
        sqlx::query(
            "INSERT INTO product_images (product_id, id, position, alt, width, height, thumb_width, thumb_height,
                                         display_jpeg, thumb_jpeg, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(product_id)
        .bind(&renditions.digest)
        .bind(ids.len() as i64)
        .bind(alt)
        .bind(i64::from(renditions.display.width))
        .bind(i64::from(renditions.display.height))
        .bind(i64::from(renditions.thumb.width))
        .bind(i64::from(renditions.thumb.height))
        .bind(renditions.display.jpeg.as_slice())
        .bind(renditions.thumb.jpeg.as_slice())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        match placement {
            Placement::Main => ids.insert(0, renditions.digest.clone()),
            Placement::Last => ids.push(renditions.digest.clone()),
        }
        renumber(&mut tx, product_id, &ids).await?;
        let row = image_row(&mut tx, product_id, &renditions.digest).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Changes a picture's alt text and/or moves it to `position` (0 is the main picture;
    /// past the end means last).
    pub async fn update_image(
        &self,
        product_id: i64,
        image_id: &str,
        alt: Option<&str>,
        position: Option<usize>,
    ) -> Result<ImageRow> {
        let mut tx = self.db.begin_write().await?;
        touch_product(&mut tx, product_id).await?;
        let mut ids = image_order(&mut tx, product_id).await?;
        let Some(from) = ids.iter().position(|id| id == image_id) else {
            return Err(no_image(product_id, image_id));
        };
        if let Some(alt) = alt {
            sqlx::query("UPDATE product_images SET alt = $3 WHERE product_id = $1 AND id = $2")
                .bind(product_id)
                .bind(image_id)
                .bind(alt)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(to) = position {
            let moved = ids.remove(from);
            ids.insert(to.min(ids.len()), moved);
            renumber(&mut tx, product_id, &ids).await?;
        }
        let row = image_row(&mut tx, product_id, image_id).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn delete_image(&self, product_id: i64, image_id: &str) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        touch_product(&mut tx, product_id).await?;
        let deleted = sqlx::query("DELETE FROM product_images WHERE product_id = $1 AND id = $2")
            .bind(product_id)
            .bind(image_id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(no_image(product_id, image_id));
        }
        let ids = image_order(&mut tx, product_id).await?;
        renumber(&mut tx, product_id, &ids).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pictures of these products, each product's in order.
    pub async fn images_of(&self, product_ids: &[i64]) -> Result<Vec<ImageRow>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        // A page holds at most 100 products; their ids are numbers, bound one by one.
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM product_images WHERE product_id IN ({}) ORDER BY product_id, position",
            placeholders(1, product_ids.len())
        );
        let mut query = sqlx::query_as::<_, ImageRow>(&sql);
        for id in product_ids {
            query = query.bind(*id);
        }
        Ok(query.fetch_all(self.db.read()).await?)
    }

    pub async fn has_image(&self, product_id: i64, image_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS found FROM product_images WHERE product_id = $1 AND id = $2")
            .bind(product_id)
            .bind(image_id)
            .fetch_optional(self.db.read())
            .await?;
        Ok(row.is_some())
    }

    /// One size of one picture: its JPEG bytes.
    pub async fn image_bytes(&self, product_id: i64, image_id: &str, size: Size) -> Result<Option<Vec<u8>>> {
        let column = match size {
            Size::Thumb => "thumb_jpeg",
            Size::Display => "display_jpeg",
        };
        let row =
            sqlx::query(&format!("SELECT {column} AS jpeg FROM product_images WHERE product_id = $1 AND id = $2"))
                .bind(product_id)
                .bind(image_id)
                .fetch_optional(self.db.read())
                .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("jpeg")).transpose()?)
    }
}

async fn touch_product(conn: &mut AnyConnection, product_id: i64) -> Result<()> {
    let touched = sqlx::query("UPDATE products SET version = version + 1, updated_at = $2 WHERE id = $1")
        .bind(product_id)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(CatalogError::NotFound(format!("No product {product_id}.")));
    }
    Ok(())
}

async fn image_order(conn: &mut AnyConnection, product_id: i64) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT id FROM product_images WHERE product_id = $1 ORDER BY position, created_at")
        .bind(product_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter().map(|r| Ok(r.try_get("id")?)).collect()
}

async fn renumber(conn: &mut AnyConnection, product_id: i64, ids: &[String]) -> Result<()> {
    for (position, id) in ids.iter().enumerate() {
        sqlx::query("UPDATE product_images SET position = $3 WHERE product_id = $1 AND id = $2 AND position <> $3")
            .bind(product_id)
            .bind(id)
            .bind(position as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn image_row(conn: &mut AnyConnection, product_id: i64, image_id: &str) -> Result<ImageRow> {
    sqlx::query_as::<_, ImageRow>(&format!(
        "SELECT {IMAGE_COLUMNS} FROM product_images WHERE product_id = $1 AND id = $2"
    ))
    .bind(product_id)
    .bind(image_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| no_image(product_id, image_id))
}
