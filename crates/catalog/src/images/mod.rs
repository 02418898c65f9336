//! Product pictures: what an upload must be, and the renditions the catalog keeps of it.
//!
//! Only re-encoded renditions are stored, never the uploaded file: whatever a camera or an
//! editor wrote beside the pixels (EXIF with GPS positions, comments, colour profiles,
//! trailing data, a script appended to a PNG) is gone by construction, not by a filter that
//! must know every hiding place. The format is read from the bytes; the name and the declared
//! content type are not trusted.

pub mod routes;
mod service;

use std::io::Cursor;

use axum::http::StatusCode;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use kit::Problem;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub(crate) use service::no_image;
pub use service::{ImageChange, ProductImage, parse_alt};

/// The longest side of the picture shown on a product's page.
pub const DISPLAY_SIDE: u32 = 1200;
/// The longest side of the picture in lists (the catalogue, the cart).
pub const THUMB_SIDE: u32 = 320;
/// No side may be longer than this, whatever the pixel budget: the decoder refuses before it
/// allocates.
pub const MAX_SIDE: u32 = 12_000;

/// What an upload may be (`IMAGE_MAX_BYTES`, `IMAGE_MAX_PIXELS`, `IMAGES_PER_PRODUCT`).
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_bytes: usize,
    pub max_pixels: u64,
    pub per_product: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits { max_bytes: 8 * 1024 * 1024, max_pixels: 40_000_000, per_product: 12 }
    }
}

/// Why an upload was refused; each maps to its own 4xx.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageRefusal {
    #[error("The picture is {size} bytes or more; at most {max} are accepted.")]
    TooLarge { size: usize, max: usize },
    #[error("The file is not a JPEG, PNG or WebP picture.")]
    NotAnImage,
    #[error("The picture is {width}×{height} pixels; at most {max} pixels and {MAX_SIDE} on a side are accepted.")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("The picture could not be read: {0}")]
    Unreadable(String),
    #[error("The picture is empty.")]
    Empty,
}

impl From<ImageRefusal> for Problem {
    fn from(r: ImageRefusal) -> Problem {
        let detail = r.to_string();
        match r {
            ImageRefusal::TooLarge { max, .. } => kit::extract::payload_too_large(detail).with("max_bytes", max),
            ImageRefusal::NotAnImage => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Not a supported picture")
                    .detail(detail)
                    .with("accepted", ["image/jpeg", "image/png", "image/webp"])
            }
            ImageRefusal::TooManyPixels { max, .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "image-too-many-pixels", "Picture too big")
                    .detail(detail)
                    .with("max_pixels", max)
            }
            ImageRefusal::Unreadable(_) | ImageRefusal::Empty => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "image-unreadable", "Picture unreadable").detail(detail)
            }
        }
    }
}

/// One size of a stored picture, as it is served.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub width: u32,
    pub height: u32,
    pub jpeg: Vec<u8>,
}

/// What the catalog keeps of an upload.
#[derive(Debug, Clone)]
pub struct Renditions {
    /// Derived from the uploaded bytes: the same file uploaded twice is the same picture.
    pub digest: String,
    pub display: Rendition,
    pub thumb: Rendition,
}

/// The sizes a picture is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Thumb,
    Display,
}

impl Size {
    /// `thumb.jpg` / `display.jpg`, the last segment of a picture's URL.
    pub fn from_file_name(name: &str) -> Option<Size> {
        match name {
            "thumb.jpg" => Some(Size::Thumb),
            "display.jpg" => Some(Size::Display),
            _ => None,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Size::Thumb => "thumb.jpg",
            Size::Display => "display.jpg",
        }
    }
}

/// Checks an upload and makes its renditions. CPU-bound: call it off the async workers.
pub fn process(bytes: &[u8], limits: &ImageLimits) -> Result<Renditions, ImageRefusal> {
    if bytes.is_empty() {
        return Err(ImageRefusal::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageRefusal::TooLarge { size: bytes.len(), max: limits.max_bytes });
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP))
        .ok_or(ImageRefusal::NotAnImage)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // The header's dimensions are checked below before any pixel is decoded; these limits
    // are the decoder's own second line against a file that lies about itself.
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(MAX_SIDE);
    decoder_limits.max_image_height = Some(MAX_SIDE);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(4).saturating_add(64 * 1024 * 1024));
    reader.limits(decoder_limits);
    let too_big = |(width, height): (u32, u32)| ImageRefusal::TooManyPixels { width, height, max: limits.max_pixels };
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => {
            too_big(header_dimensions(bytes, format).unwrap_or((MAX_SIDE + 1, MAX_SIDE + 1)))
        }
        other => ImageRefusal::Unreadable(other.to_string()),
    })?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageRefusal::Empty);
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels || width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_big((width, height)));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => too_big((width, height)),
        other => ImageRefusal::Unreadable(other.to_string()),
    })?;
    // Cameras store pictures sideways and say so in EXIF; that note is not kept, so the
    // turn is made now.
    picture.apply_orientation(orientation);
    let flat = flatten_on_white(&picture);
    let display = render(&flat, DISPLAY_SIDE, 85)?;
    let thumb = render(&flat, THUMB_SIDE, 78)?;
    let digest = hex::encode(&Sha256::digest(bytes)[..12]);
    Ok(Renditions { digest, display, thumb })
}

fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    reader.into_dimensions().ok()
}

/// JPEG has no transparency: transparent parts become the page's white. The result is 8-bit
/// RGB, as the encoder takes it.
fn flatten_on_white(picture: &DynamicImage) -> DynamicImage {
    if !picture.color().has_alpha() {
        return DynamicImage::ImageRgb8(picture.to_rgb8());
    }
    let rgba = picture.to_rgba8();
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u16::from(px[3]);
        rgb.extend(px[..3].iter().map(|&c| ((u16::from(c) * a + 255 * (255 - a)) / 255) as u8));
    }
    let flat = RgbImage::from_raw(rgba.width(), rgba.height(), rgb).expect("three bytes a pixel");
    DynamicImage::ImageRgb8(flat)
}

/// Fits the picture within `side`×`side` (never enlarging it) and encodes it as JPEG.
///
/// Only `DynamicImage`'s own methods and the encoder's byte interface are used: generic
/// image functions would be compiled into this crate, unoptimised in a debug build, and make a
/// test's upload take seconds instead of milliseconds.
fn render(picture: &DynamicImage, side: u32, quality: u8) -> Result<Rendition, ImageRefusal> {
    let (w, h) = (picture.width(), picture.height());
    let scaled;
    let source = if w > side || h > side {
        let (nw, nh) = fit(w, h, side);
        scaled = picture.resize_exact(nw, nh, FilterType::CatmullRom);
        &scaled
    } else {
        picture
    };
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(source.as_bytes(), source.width(), source.height(), ExtendedColorType::Rgb8)
        .map_err(|e| ImageRefusal::Unreadable(e.to_string()))?;
    Ok(Rendition { width: source.width(), height: source.height(), jpeg })
}

/// The largest size within `side`×`side` with the same proportions (at least one pixel).
fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    if w >= h {
        (side, ((u64::from(h) * u64::from(side) + u64::from(w) / 2) / u64::from(w)).max(1) as u32)
    } else {
        (((u64::from(w) * u64::from(side) + u64::from(h) / 2) / u64::from(h)).max(1) as u32, side)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut out = Vec::new();
        picture.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn a_picture_is_kept_as_two_jpeg_sizes_in_its_proportions() {
        let r = process(&png(1600, 800), &ImageLimits::default()).unwrap();
        assert_eq!((r.display.width, r.display.height), (1200, 600));
        assert_eq!((r.thumb.width, r.thumb.height), (320, 160));
        assert_eq!(image::guess_format(&r.display.jpeg).unwrap(), ImageFormat::Jpeg);
        let small = process(&png(100, 300), &ImageLimits::default()).unwrap();
        assert_eq!((small.display.width, small.display.height), (100, 300), "never enlarged");
        assert_eq!((small.thumb.width, small.thumb.height), (100, 300));
    }

    #[test]
    fn what_is_not_a_picture_is_refused_by_its_bytes() {
        let limits = ImageLimits::default();
        assert_eq!(process(b"\x7fELF\x02\x01\x01\0\0\0\0\0", &limits).unwrap_err(), ImageRefusal::NotAnImage);
        assert_eq!(process(b"GIF89a....", &limits).unwrap_err(), ImageRefusal::NotAnImage);
        assert_eq!(process(b"", &limits).unwrap_err(), ImageRefusal::Empty);
        let mut cut = png(64, 64);
        cut.truncate(cut.len() / 2);
        assert!(matches!(process(&cut, &limits).unwrap_err(), ImageRefusal::Unreadable(_)));
    }

    #[test]
    fn limits_are_checked_before_decoding() {
        let limits = ImageLimits { max_bytes: 1000, ..ImageLimits::default() };
        assert!(matches!(process(&png(200, 200), &limits).unwrap_err(), ImageRefusal::TooLarge { max: 1000, .. }));
        let limits = ImageLimits { max_pixels: 100 * 100, ..ImageLimits::default() };
        assert_eq!(
            process(&png(101, 100), &limits).unwrap_err(),
            ImageRefusal::TooManyPixels { width: 101, height: 100, max: 10_000 }
        );
    }

    #[test]
    fn transparency_becomes_white() {
        let clear = image::RgbaImage::from_pixel(8, 8, image::Rgba([0, 0, 0, 0]));
        let mut bytes = Vec::new();
        clear.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
        let r = process(&bytes, &ImageLimits::default()).unwrap();
        let back = image::load_from_memory(&r.thumb.jpeg).unwrap().to_rgb8();
        assert!(back.pixels().all(|p| p.0.iter().all(|c| *c > 245)), "{:?}", back.get_pixel(0, 0));
    }

    #[test]
    fn proportions_survive_fitting() {
        assert_eq!(fit(4000, 3000, 1200), (1200, 900));
        assert_eq!(fit(3000, 4000, 320), (240, 320));
        assert_eq!(fit(12000, 1, 320), (320, 1));
    }
}
