//! Product pictures through the gateway: uploads over the public API (larger than any JSON
//! body), the storefront's upload form, and the pictures on the catalogue's pages.

use std::io::Cursor;

use axum::http::StatusCode;
use image::{ImageFormat, RgbImage};
use serde_json::Value;

mod common;

use common::{Services, csrf_in, gateway, login, storefront_session};

/// A PNG of noise: it does not compress, so it is about `width × height × 3` bytes.
fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let picture = RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = Vec::new();
    picture.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
    out
}

#[tokio::test]
async fn a_picture_larger_than_any_json_body_goes_up_through_the_api_and_comes_back_cacheable() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::new();
    let alice = login(&http, &gw, "alice", "alice123").await["access_token"].as_str().unwrap().to_string();
    let picture = noisy_png(800, 700);
    assert!(picture.len() > 1024 * 1024, "over the 1 MiB body limit: {} bytes", picture.len());

    let res = http
        .post(gw.url("/api/products/1/images?alt=Noise"))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let image: Value = res.json().await.unwrap();
    let url = image["thumbnail_url"].as_str().unwrap();
    assert!(url.starts_with("/api/products/1/images/"), "links go through the gateway: {url}");
    let res = http.get(gw.url(url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = res.headers()["etag"].clone();
    let res = http.get(gw.url(url)).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // The larger limit is for uploads only, and only for administrators.
    let res = http
        .post(gw.url("/api/products"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(1200 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bob = login(&http, &gw, "bob", "bob123").await["access_token"].as_str().unwrap().to_string();
    let res = http.post(gw.url("/api/products/1/images")).bearer_auth(&bob).body(picture).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    services.finish().await;
}

/// A multipart/form-data body as a browser sends the upload form.
fn upload_form(csrf: &str, alt: &str, picture: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----ordermesh-test-boundary";
    let mut body = Vec::new();
    for (name, value) in [("_csrf", csrf), ("alt", alt), ("main", "true")] {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"picture\"; filename=\"mug.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .bytes(),
    );
    body.extend(picture);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn an_administrator_uploads_through_the_storefront_and_the_catalogue_shows_it() {
    let services = Services::start(&|s| s).await;
    let gw = gateway(services.settings()).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = storefront_session(&http, &gw, "alice", "alice123").await;

    let page = http.get(gw.url("/admin/products/12")).header("cookie", jar.header()).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    jar.take(&page);
    let html = page.text().await.unwrap();
    assert!(html.contains("enctype=\"multipart/form-data\""), "the page has the upload form");
    let csrf = csrf_in(&html);
    let picture = noisy_png(60, 40);
    let count = || async {
        let p: Value = http.get(services.catalog.url("/products/12")).send().await.unwrap().json().await.unwrap();
        p["images"].as_array().unwrap().len()
    };
    let before = count().await;

    let submit = |csrf: &str, alt: &str| {
        let (content_type, body) = upload_form(csrf, alt, &picture);
        http.post(gw.url("/admin/products/12/pictures"))
            .header("cookie", jar.header())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = submit("not-the-token", "A mug").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "an upload without the session's CSRF token");
    assert_eq!(count().await, before, "nothing was stored");

    let res = submit(&csrf, "A noisy mug").await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{:?}", res.text().await);
    assert_eq!(count().await, before + 1);

    let page = |path: &str| http.get(gw.url(path)).header("accept", "text/html").send();
    let html = page("/products/12").await.unwrap().text().await.unwrap();
    assert!(html.contains("alt=\"A noisy mug\""), "the product page shows the new main picture");
    let html = page("/products?category=Home").await.unwrap().text().await.unwrap();
    assert!(html.contains("class=\"thumb\""), "the catalogue shows thumbnails");
    assert!(html.contains("src=\"/api/products/12/images/"), "served through the gateway's API");
    assert!(html.contains("loading=\"lazy\"") && html.contains("srcset=\""));
    services.finish().await;
}
