//! Draws the demo catalogue's product pictures (flat illustrations from a few shapes) into
//! `crates/catalog/demo-pictures/<SKU>.png`, which the demo data embeds. The pictures are the
//! project's own, made here; nothing is downloaded.
//!
//! Run after changing a drawing: `cargo run -p catalog --example draw_demo_pictures`.

use std::path::PathBuf;

use image::{Rgb, RgbImage};

const SIDE: u32 = 640;

type Colour = [u8; 3];

/// A canvas that paints shapes with anti-aliased edges: each shape is a signed distance
/// (negative inside), and a pixel takes as much of the colour as the shape covers of it.
struct Canvas {
    image: RgbImage,
}

impl Canvas {
    fn new(top: Colour, bottom: Colour) -> Self {
        let image = RgbImage::from_fn(SIDE, SIDE, |_, y| {
            let t = y as f32 / SIDE as f32;
            Rgb(std::array::from_fn(|i| (top[i] as f32 * (1.0 - t) + bottom[i] as f32 * t) as u8))
        });
        Canvas { image }
    }

    fn paint(&mut self, bounds: [f32; 4], colour: Colour, distance: impl Fn(f32, f32) -> f32) {
        let [x0, y0, x1, y1] = bounds;
        let clamp = |v: f32| (v.max(0.0) as u32).min(SIDE - 1);
        for y in clamp(y0 - 2.0)..=clamp(y1 + 2.0) {
            for x in clamp(x0 - 2.0)..=clamp(x1 + 2.0) {
                let coverage = (0.5 - distance(x as f32 + 0.5, y as f32 + 0.5)).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    let pixel = self.image.get_pixel_mut(x, y);
                    for (c, new) in pixel.0.iter_mut().zip(colour) {
                        *c = (*c as f32 * (1.0 - coverage) + new as f32 * coverage) as u8;
                    }
                }
            }
        }
    }

    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, radius: f32, colour: Colour) {
        let (cx, cy, hw, hh) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0, (x1 - x0) / 2.0, (y1 - y0) / 2.0);
        self.paint([x0, y0, x1, y1], colour, |x, y| {
            let qx = (x - cx).abs() - hw + radius;
            let qy = (y - cy).abs() - hh + radius;
            qx.max(0.0).hypot(qy.max(0.0)) + qx.max(qy).min(0.0) - radius
        });
    }

    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, colour: Colour) {
        self.paint([cx - rx, cy - ry, cx + rx, cy + ry], colour, |x, y| {
            (((x - cx) / rx).hypot((y - cy) / ry) - 1.0) * rx.min(ry)
        });
    }

    fn circle(&mut self, cx: f32, cy: f32, r: f32, colour: Colour) {
        self.ellipse(cx, cy, r, r, colour);
    }

    /// A ring, kept only where `keep(x, y)` holds (half rings for handles and bands).
    fn ring(&mut self, cx: f32, cy: f32, outer: f32, inner: f32, colour: Colour, keep: impl Fn(f32, f32) -> bool) {
        self.paint([cx - outer, cy - outer, cx + outer, cy + outer], colour, |x, y| {
            if !keep(x, y) {
                return 1.0;
            }
            let d = (x - cx).hypot(y - cy);
            (d - outer).max(inner - d)
        });
    }

    /// A stroke with round ends.
    fn line(&mut self, from: (f32, f32), to: (f32, f32), width: f32, colour: Colour) {
        let (ax, ay, bx, by) = (from.0, from.1, to.0, to.1);
        let bounds = [ax.min(bx) - width, ay.min(by) - width, ax.max(bx) + width, ay.max(by) + width];
        self.paint(bounds, colour, |x, y| {
            let (px, py, dx, dy) = (x - ax, y - ay, bx - ax, by - ay);
            let t = ((px * dx + py * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
            (px - dx * t).hypot(py - dy * t) - width / 2.0
        });
    }

    fn shadow(&mut self, cx: f32, y: f32, rx: f32) {
        self.ellipse(cx, y, rx, rx / 8.0, [200, 200, 205]);
    }
}

const INK: Colour = [45, 48, 56];
const WHITE: Colour = [250, 250, 250];
const SILVER: Colour = [196, 200, 208];

fn electronics() -> Canvas {
    Canvas::new([226, 236, 250], [200, 216, 240])
}

fn books() -> Canvas {
    Canvas::new([250, 240, 224], [238, 220, 196])
}

fn office_or_home() -> Canvas {
    Canvas::new([232, 244, 234], [208, 228, 212])
}

fn laptop() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 430.0, 250.0);
    c.rect(150.0, 150.0, 490.0, 385.0, 14.0, INK);
    c.rect(166.0, 166.0, 474.0, 369.0, 6.0, [88, 146, 230]);
    c.rect(166.0, 166.0, 474.0, 220.0, 6.0, [120, 170, 240]);
    c.rect(95.0, 385.0, 545.0, 420.0, 12.0, SILVER);
    c.rect(280.0, 388.0, 360.0, 398.0, 4.0, [170, 174, 184]);
    c
}

fn mouse() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 480.0, 110.0);
    c.rect(245.0, 160.0, 395.0, 475.0, 75.0, [112, 118, 132]);
    c.line((320.0, 166.0), (320.0, 290.0), 5.0, INK);
    c.rect(309.0, 205.0, 331.0, 255.0, 10.0, INK);
    c.line((250.0, 290.0), (390.0, 290.0), 4.0, [90, 96, 110]);
    c
}

fn book(cover: Colour, spine: Colour, emblem: impl Fn(&mut Canvas)) -> Canvas {
    let mut c = books();
    c.shadow(330.0, 530.0, 170.0);
    c.rect(196.0, 126.0, 462.0, 526.0, 10.0, [225, 225, 220]);
    c.rect(186.0, 116.0, 452.0, 516.0, 10.0, cover);
    c.rect(186.0, 116.0, 214.0, 516.0, 6.0, spine);
    c.rect(240.0, 160.0, 420.0, 178.0, 4.0, WHITE);
    c.rect(240.0, 192.0, 380.0, 204.0, 4.0, WHITE);
    emblem(&mut c);
    c
}

fn go_book() -> Canvas {
    book([0, 173, 216], [0, 128, 160], |c| {
        c.ellipse(330.0, 370.0, 80.0, 92.0, [118, 210, 236]);
        c.circle(300.0, 340.0, 22.0, WHITE);
        c.circle(360.0, 340.0, 22.0, WHITE);
        c.circle(305.0, 342.0, 9.0, INK);
        c.circle(365.0, 342.0, 9.0, INK);
        c.rect(318.0, 372.0, 342.0, 390.0, 6.0, [240, 220, 190]);
    })
}

fn rust_book() -> Canvas {
    book([206, 66, 43], [150, 44, 28], |c| {
        for i in 0..10 {
            let a = i as f32 * std::f32::consts::TAU / 10.0;
            c.circle(330.0 + 78.0 * a.cos(), 360.0 + 78.0 * a.sin(), 16.0, INK);
        }
        c.ring(330.0, 360.0, 80.0, 40.0, INK, |_, _| true);
    })
}

fn data_book() -> Canvas {
    book([92, 35, 51], [62, 20, 32], |c| {
        for (i, w) in [150.0, 120.0, 170.0, 100.0].iter().enumerate() {
            let y = 300.0 + i as f32 * 40.0;
            c.rect(250.0, y, 250.0 + w, y + 20.0, 6.0, [214, 160, 170]);
        }
        c.circle(400.0, 460.0, 22.0, [240, 200, 120]);
    })
}

fn phone() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 550.0, 120.0);
    c.rect(228.0, 96.0, 412.0, 544.0, 38.0, INK);
    c.rect(240.0, 108.0, 400.0, 532.0, 28.0, [132, 98, 214]);
    c.rect(240.0, 300.0, 400.0, 532.0, 28.0, [190, 120, 220]);
    c.rect(290.0, 120.0, 350.0, 138.0, 9.0, INK);
    for (x, y) in [(270.0, 180.0), (320.0, 180.0), (370.0, 180.0), (270.0, 230.0), (320.0, 230.0)] {
        c.rect(x - 16.0, y - 16.0, x + 16.0, y + 16.0, 8.0, WHITE);
    }
    c
}

fn keyboard() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 420.0, 260.0);
    c.rect(85.0, 225.0, 555.0, 415.0, 18.0, INK);
    for row in 0..4 {
        for col in 0..12 {
            let x = 105.0 + col as f32 * 36.5;
            let y = 245.0 + row as f32 * 36.0;
            c.rect(x, y, x + 30.0, y + 28.0, 5.0, [206, 164, 106]);
        }
    }
    c.rect(190.0, 390.0, 450.0, 405.0, 5.0, [206, 164, 106]);
    c
}

fn monitor() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 495.0, 130.0);
    c.rect(300.0, 395.0, 340.0, 480.0, 4.0, SILVER);
    c.rect(220.0, 470.0, 420.0, 494.0, 10.0, SILVER);
    c.rect(100.0, 120.0, 540.0, 405.0, 12.0, INK);
    c.rect(114.0, 134.0, 526.0, 391.0, 4.0, [120, 200, 180]);
    c.ellipse(230.0, 300.0, 140.0, 60.0, [96, 170, 150]);
    c.circle(440.0, 200.0, 34.0, [250, 220, 120]);
    c
}

fn headphones() -> Canvas {
    let mut c = electronics();
    c.shadow(320.0, 480.0, 200.0);
    c.ring(320.0, 330.0, 180.0, 152.0, INK, |_, y| y <= 330.0);
    c.rect(125.0, 300.0, 205.0, 460.0, 34.0, [70, 74, 86]);
    c.rect(435.0, 300.0, 515.0, 460.0, 34.0, [70, 74, 86]);
    c.rect(190.0, 320.0, 215.0, 440.0, 10.0, [214, 60, 80]);
    c.rect(425.0, 320.0, 450.0, 440.0, 10.0, [214, 60, 80]);
    c
}

fn lamp() -> Canvas {
    let mut c = office_or_home();
    c.ellipse(450.0, 495.0, 120.0, 26.0, [246, 240, 196]);
    c.shadow(300.0, 505.0, 110.0);
    c.rect(220.0, 470.0, 380.0, 500.0, 12.0, INK);
    c.line((300.0, 480.0), (240.0, 320.0), 16.0, [60, 130, 110]);
    c.line((240.0, 320.0), (370.0, 210.0), 16.0, [60, 130, 110]);
    c.circle(240.0, 320.0, 16.0, INK);
    c.ring(400.0, 240.0, 70.0, 0.0, [60, 130, 110], |x, y| y - 240.0 < (x - 400.0) * 0.9);
    c.circle(420.0, 262.0, 22.0, [255, 236, 150]);
    c
}

fn chair() -> Canvas {
    let mut c = office_or_home();
    c.shadow(320.0, 520.0, 140.0);
    c.line((320.0, 455.0), (215.0, 500.0), 14.0, INK);
    c.line((320.0, 455.0), (425.0, 500.0), 14.0, INK);
    c.line((320.0, 455.0), (320.0, 510.0), 14.0, INK);
    for x in [215.0, 425.0, 320.0] {
        c.circle(x, if x == 320.0 { 514.0 } else { 504.0 }, 13.0, [90, 94, 104]);
    }
    c.rect(309.0, 360.0, 331.0, 460.0, 6.0, SILVER);
    c.rect(238.0, 130.0, 402.0, 320.0, 46.0, [52, 96, 170]);
    c.rect(300.0, 300.0, 340.0, 345.0, 6.0, INK);
    c.rect(210.0, 330.0, 430.0, 372.0, 18.0, [52, 96, 170]);
    c
}

fn mug() -> Canvas {
    let mut c = office_or_home();
    c.shadow(320.0, 475.0, 140.0);
    c.ring(405.0, 345.0, 62.0, 38.0, [200, 60, 50], |x, _| x >= 395.0);
    c.rect(215.0, 215.0, 410.0, 470.0, 26.0, [200, 60, 50]);
    c.rect(230.0, 225.0, 395.0, 245.0, 8.0, [120, 70, 40]);
    for x in [265.0, 312.0, 359.0] {
        c.line((x, 190.0), (x + 12.0, 160.0), 8.0, WHITE);
        c.line((x + 12.0, 160.0), (x, 130.0), 8.0, WHITE);
    }
    c
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    type Drawing = fn() -> Canvas;
    let pictures: [(&str, Drawing); 12] = [
        ("LAPTOP-15", laptop),
        ("MOUSE-WL", mouse),
        ("BOOK-GO", go_book),
        ("IPHONE-15", phone),
        ("KEYB-MECH", keyboard),
        ("MON-27", monitor),
        ("HEAD-NC", headphones),
        ("BOOK-RUST", rust_book),
        ("BOOK-DDIA", data_book),
        ("DESK-LAMP", lamp),
        ("CHAIR-ERGO", chair),
        ("MUG-CERAMIC", mug),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo-pictures");
    std::fs::create_dir_all(&dir)?;
    for (sku, draw) in pictures {
        let path = dir.join(format!("{sku}.png"));
        draw().image.save(&path)?;
        println!("{}", path.display());
    }
    Ok(())
}
