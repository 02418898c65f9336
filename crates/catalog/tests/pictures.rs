//! Product pictures end to end: the real users and catalog services on 127.0.0.1 port 0, on
//! SQLite, or PostgreSQL when `ORDERMESH_TEST_POSTGRES` is set.

use std::io::Cursor;

use image::{ImageFormat, RgbImage};
use kit::config::Settings;
use kit::testing::{TestServer, send_json};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

struct Shop {
    platform: testkit::Services,
    http: reqwest::Client,
    admin: String,
}

impl Shop {
    async fn start() -> Self {
        Self::with(|s| s).await
    }

    async fn with(extra: impl Fn(Settings) -> Settings) -> Self {
        let platform = testkit::Services::start(&extra).await;
        let http = reqwest::Client::new();
        let admin = testkit::token(&platform.users, "alice", "alice123").await;
        Shop { platform, http, admin }
    }

    fn url(&self, path: &str) -> String {
        self.platform.catalog.url(path)
    }

    async fn json(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        send_json(&self.http, method, &self.url(path), token, body.as_ref()).await
    }

    async fn product(&self, id: i64) -> (Value, String) {
        let res = self.http.get(self.url(&format!("/products/{id}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let etag = res.headers()[header::ETAG].to_str().unwrap().to_string();
        (res.json().await.unwrap(), etag)
    }

    async fn create(&self, name: &str) -> i64 {
        let body = json!({"name": name, "category": "Test", "price": "5.00", "stock": 3});
        let (status, p) = self.json(Method::POST, "/products", Some(&self.admin), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        p["id"].as_i64().unwrap()
    }

    async fn upload(&self, id: i64, query: &str, token: Option<&str>, bytes: Vec<u8>) -> (StatusCode, Value) {
        upload_to(&self.http, &self.platform.catalog, id, query, token, bytes).await
    }
}

async fn upload_to(
    http: &reqwest::Client,
    catalog: &TestServer,
    id: i64,
    query: &str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = http
        .post(catalog.url(&format!("/products/{id}/images{query}")))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let picture = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 120]));
    let mut out = Vec::new();
    picture.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encoded(width, height, ImageFormat::Png)
}

#[tokio::test]
async fn an_administrator_adds_arranges_and_deletes_pictures_and_everyone_sees_them() {
    let shop = Shop::start().await;
    let id = shop.create("Teapot").await;
    let (_, etag_before) = shop.product(id).await;

    let (status, first) =
        shop.upload(id, "?alt=A%20teapot%20from%20the%20side", Some(&shop.admin), png(1600, 900)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!((first["width"].as_i64(), first["height"].as_i64()), (Some(1200), Some(675)));
    assert_eq!((first["thumbnail_width"].as_i64(), first["thumbnail_height"].as_i64()), (Some(320), Some(180)));
    assert_eq!(first["alt"], "A teapot from the side");
    let webp = encoded(300, 300, ImageFormat::WebP);
    let (status, second) = shop.upload(id, "?main=true", Some(&shop.admin), webp).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["alt"], "Teapot", "alt text defaults to the product's name");
    let jpeg = encoded(200, 100, ImageFormat::Jpeg);
    let (status, third) = shop.upload(id, "", Some(&shop.admin), jpeg.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    let (status, again) = shop.upload(id, "", Some(&shop.admin), jpeg).await;
    assert_eq!(status, StatusCode::CONFLICT, "the same file twice is one picture: {again}");

    let (product, etag_after) = shop.product(id).await;
    assert_ne!(etag_before, etag_after, "pictures are part of the product: its ETag changes");
    let ids = |p: &Value| p["images"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&product), vec![second["id"].clone(), first["id"].clone(), third["id"].clone()]);
    assert_eq!(product["images"][0]["main"], true);
    assert_eq!(product["images"][1]["main"], false);

    // Anyone reads a picture; its URL names fixed content, so it is cacheable for a year and
    // revalidates with 304.
    let thumb = product["images"][1]["thumbnail_url"].as_str().unwrap().to_string();
    assert!(thumb.starts_with(&format!("/products/{id}/images/")), "{thumb}");
    let res = shop.http.get(shop.url(&thumb)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    let tag = res.headers()[header::ETAG].clone();
    let bytes = res.bytes().await.unwrap();
    let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 180));
    let res = shop.http.get(shop.url(&thumb)).header(header::IF_NONE_MATCH, tag.clone()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(res.bytes().await.unwrap().is_empty());

    // Arranged: the first upload becomes main again; alt text changes.
    let first_id = first["id"].as_str().unwrap();
    let path = format!("/products/{id}/images/{first_id}");
    let (status, moved) =
        shop.json(Method::PATCH, &path, Some(&shop.admin), Some(json!({"position": 0, "alt": "Teapot, side"}))).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!((moved["main"].as_bool(), moved["alt"].as_str()), (Some(true), Some("Teapot, side")));
    let (status, refused) = shop.json(Method::PATCH, &path, Some(&shop.admin), Some(json!({"alt": " \n "}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    // Deleted: gone from the product, and its URL no longer answers, not even with a 304.
    let (status, _) = shop.json(Method::DELETE, &path, Some(&shop.admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (product, _) = shop.product(id).await;
    assert_eq!(ids(&product), vec![second["id"].clone(), third["id"].clone()]);
    assert_eq!(product["images"][0]["main"], true);
    let res = shop.http.get(shop.url(&thumb)).header(header::IF_NONE_MATCH, tag).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (status, _) = shop.json(Method::DELETE, &path, Some(&shop.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Lists carry the pictures too, and a proxy's prefix shapes their URLs.
    let listing: Value = shop
        .http
        .get(shop.url("/products?q=Teapot"))
        .header("x-forwarded-prefix", "/api")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = listing["items"][0]["images"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("/api/products/{id}/images/")) && url.ends_with("/display.jpg"), "{url}");
    shop.platform.finish().await;
}

/// A PNG whose header claims `width`×`height` pixels, with almost no data behind it: what a
/// decompression bomb looks like before it is decompressed.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    // A zlib stream of zeros: it would inflate to gigabytes of pixels if anything read it.
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[tokio::test]
async fn unacceptable_uploads_are_refused_with_their_reason_and_nothing_is_stored() {
    let shop = Shop::with(|s| s.with("IMAGE_MAX_BYTES", "200000").with("IMAGE_MAX_PIXELS", "4000000")).await;
    let id = shop.create("Vase").await;
    let (_, etag) = shop.product(id).await;
    let bob = testkit::token(&shop.platform.users, "bob", "bob123").await;

    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0".repeat(40);
    // What is sent, by whom, and the status and problem type it must get.
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("no token", None, png(10, 10), StatusCode::UNAUTHORIZED, ""),
        ("not an administrator", Some(&bob), png(10, 10), StatusCode::FORBIDDEN, ""),
        (
            "text",
            Some(&shop.admin),
            b"just some text, not a picture".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "an executable named .png",
            Some(&shop.admin),
            elf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "a GIF",
            Some(&shop.admin),
            b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        ("empty", Some(&shop.admin), Vec::new(), StatusCode::UNPROCESSABLE_ENTITY, "image-unreadable"),
        (
            "over the byte limit",
            Some(&shop.admin),
            vec![0x89; 300_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
        (
            "over the pixel limit",
            Some(&shop.admin),
            png(2100, 2000),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-too-many-pixels",
        ),
        (
            "a decompression bomb",
            Some(&shop.admin),
            png_claiming(50_000, 50_000),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-too-many-pixels",
        ),
        (
            "a bomb within the side limit",
            Some(&shop.admin),
            png_claiming(10_000, 10_000),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-too-many-pixels",
        ),
        (
            "a cut-off picture",
            Some(&shop.admin),
            png(300, 300)[..400].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-unreadable",
        ),
    ];
    for (what, token, bytes, expected, kind) in cases {
        let (status, problem) = shop.upload(id, "", token, bytes).await;
        assert_eq!(status, expected, "{what}: {problem}");
        if !kind.is_empty() {
            assert!(problem["type"].as_str().unwrap_or_default().ends_with(kind), "{what}: {problem}");
            assert!(!problem["detail"].as_str().unwrap_or_default().is_empty(), "{what}: {problem}");
        }
    }
    let (status, problem) = shop.upload(id, "?alt=a%0Ab", Some(&shop.admin), png(10, 10)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "alt text on two lines: {problem}");
    let (status, _) = shop.upload(999_999, "", Some(&shop.admin), png(10, 10)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (product, etag_after) = shop.product(id).await;
    assert_eq!(product["images"], json!([]), "nothing was stored");
    assert_eq!(etag, etag_after, "the product did not change");
    shop.platform.finish().await;
}

#[tokio::test]
async fn what_a_camera_wrote_beside_the_pixels_is_not_kept() {
    let shop = Shop::start().await;
    let id = shop.create("Camera").await;
    // A JPEG with an EXIF segment holding a position, right after the start-of-image marker.
    let jpeg = encoded(64, 48, ImageFormat::Jpeg);
    let secret = b"Exif\0\0GPS 48.8584 N 2.2945 E ORDERMESH-SECRET";
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend([0xFF, 0xE1]);
    with_exif.extend(((secret.len() + 2) as u16).to_be_bytes());
    with_exif.extend(secret);
    with_exif.extend(&jpeg[2..]);
    let (status, image) = shop.upload(id, "", Some(&shop.admin), with_exif).await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    for key in ["url", "thumbnail_url"] {
        let bytes = shop.http.get(shop.url(image[key].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"ORDERMESH-SECRET"), "{key} still carries the EXIF text");
        assert!(!bytes.windows(4).any(|w| w == b"Exif"), "{key} still has an EXIF segment");
    }
    shop.platform.finish().await;
}

#[tokio::test]
async fn a_picture_uploaded_through_one_catalog_instance_is_served_by_another() {
    let shop = Shop::start().await;
    let localhost = testkit::localhost();
    let shared = shop.platform.data_of(testkit::ServiceName::Catalog);
    let mut settings = Settings::from_pairs([
        ("DATA_DIR", shared.dir.display().to_string()),
        ("USER_SERVICE_URL", shop.platform.users.base()),
        ("DEMO_DATA", "false".to_string()),
    ]);
    if let Some((url, schema)) = &shared.postgres {
        settings = settings.with("DATABASE_URL", url.clone()).with("DATABASE_SCHEMA", schema.clone());
    }
    let config = catalog::Config::from_settings(&settings, localhost, 0).unwrap();
    let second = TestServer::start(catalog::router(catalog::AppState::start(config).await.unwrap())).await;

    let id = shop.create("Lamp").await;
    let original = png(500, 400);
    let (status, image) = upload_to(&shop.http, &second, id, "?alt=Lamp", Some(&shop.admin), original).await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    let url = image["url"].as_str().unwrap();
    let from_first = shop.http.get(shop.url(url)).send().await.unwrap();
    assert_eq!(from_first.status(), StatusCode::OK);
    let from_first = from_first.bytes().await.unwrap();
    let from_second = shop.http.get(second.url(url)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(from_first, from_second, "both instances serve the same stored bytes");
    assert_eq!(image::load_from_memory(&from_first).unwrap().width(), 500);
    drop(second);
    shop.platform.finish().await;
}

#[tokio::test]
async fn every_demo_product_has_its_picture() {
    let platform = testkit::Services::start(&|s| s).await;
    let http = reqwest::Client::new();
    let listing: Value =
        http.get(platform.catalog.url("/products?per_page=100")).send().await.unwrap().json().await.unwrap();
    let items = listing["items"].as_array().unwrap();
    assert_eq!(items.len(), catalog::demo::DEMO_PRODUCTS.len());
    for p in items {
        let images = p["images"].as_array().unwrap();
        assert_eq!(images.len(), 1, "{}", p["name"]);
        let thumb = http.get(platform.catalog.url(images[0]["thumbnail_url"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(thumb.status(), StatusCode::OK);
        let bytes = thumb.bytes().await.unwrap();
        assert!(bytes.len() < 12 * 1024, "{}'s thumbnail is {} bytes", p["name"], bytes.len());
        assert!(images[0]["alt"].as_str().unwrap().contains(p["name"].as_str().unwrap()));
    }
    platform.finish().await;
}
