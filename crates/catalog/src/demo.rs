//! The demo catalogue, created on first start in development mode. It carries every product
//! the seed documents use in their examples, at the prices their examples expect (seed 000's
//! client orders a Laptop at 999.99 and two Mice at 29.99, totalling 1059.97; seed 001 orders a
//! "Go Programming Book" at 29.99; seed 002 lists Electronics such as an iPhone).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::images::{ImageLimits, ImageRefusal, Renditions};

pub struct DemoProduct {
    pub sku: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub price: &'static str,
    pub stock: i64,
    /// Drawn by `examples/draw_demo_pictures.rs`.
    pub picture: &'static [u8],
}

impl DemoProduct {
    /// The picture's renditions, made once per process: tests start many catalogs, and the
    /// drawings are the project's own, within every limit.
    pub fn renditions(&self) -> Result<Renditions, ImageRefusal> {
        static MADE: Mutex<BTreeMap<&'static str, Renditions>> = Mutex::new(BTreeMap::new());
        if let Some(made) = MADE.lock().unwrap_or_else(|e| e.into_inner()).get(self.sku) {
            return Ok(made.clone());
        }
        let made = crate::images::process(self.picture, &ImageLimits::default())?;
        MADE.lock().unwrap_or_else(|e| e.into_inner()).insert(self.sku, made.clone());
        Ok(made)
    }
}

pub const DEMO_PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        sku: "LAPTOP-15",
        picture: include_bytes!("../demo-pictures/LAPTOP-15.png"),
        name: "Laptop",
        description: "15-inch laptop, 16 GB RAM, 512 GB SSD.",
        category: "Electronics",
        price: "999.99",
        stock: 50,
    },
    DemoProduct {
        sku: "MOUSE-WL",
        picture: include_bytes!("../demo-pictures/MOUSE-WL.png"),
        name: "Mouse",
        description: "Wireless optical mouse.",
        category: "Electronics",
        price: "29.99",
        stock: 500,
    },
    DemoProduct {
        sku: "BOOK-GO",
        picture: include_bytes!("../demo-pictures/BOOK-GO.png"),
        name: "Go Programming Book",
        description: "A practical introduction to Go.",
        category: "Books",
        price: "29.99",
        stock: 300,
    },
    DemoProduct {
        sku: "IPHONE-15",
        picture: include_bytes!("../demo-pictures/IPHONE-15.png"),
        name: "iPhone",
        description: "Smartphone, 128 GB.",
        category: "Electronics",
        price: "799.00",
        stock: 80,
    },
    DemoProduct {
        sku: "KEYB-MECH",
        picture: include_bytes!("../demo-pictures/KEYB-MECH.png"),
        name: "Mechanical Keyboard",
        description: "Tenkeyless keyboard with brown switches.",
        category: "Electronics",
        price: "89.50",
        stock: 120,
    },
    DemoProduct {
        sku: "MON-27",
        picture: include_bytes!("../demo-pictures/MON-27.png"),
        name: "27-inch Monitor",
        description: "27-inch 1440p IPS monitor.",
        category: "Electronics",
        price: "279.00",
        stock: 40,
    },
    DemoProduct {
        sku: "HEAD-NC",
        picture: include_bytes!("../demo-pictures/HEAD-NC.png"),
        name: "Noise-Cancelling Headphones",
        description: "Over-ear Bluetooth headphones.",
        category: "Electronics",
        price: "199.00",
        stock: 75,
    },
    DemoProduct {
        sku: "BOOK-RUST",
        picture: include_bytes!("../demo-pictures/BOOK-RUST.png"),
        name: "Rust in Practice",
        description: "Writing reliable systems software in Rust.",
        category: "Books",
        price: "44.90",
        stock: 150,
    },
    DemoProduct {
        sku: "BOOK-DDIA",
        picture: include_bytes!("../demo-pictures/BOOK-DDIA.png"),
        name: "Designing Data-Intensive Applications",
        description: "The big ideas behind reliable, scalable systems.",
        category: "Books",
        price: "39.99",
        stock: 90,
    },
    DemoProduct {
        sku: "DESK-LAMP",
        picture: include_bytes!("../demo-pictures/DESK-LAMP.png"),
        name: "Desk Lamp",
        description: "LED desk lamp with adjustable colour temperature.",
        category: "Office",
        price: "34.00",
        stock: 60,
    },
    DemoProduct {
        sku: "CHAIR-ERGO",
        picture: include_bytes!("../demo-pictures/CHAIR-ERGO.png"),
        name: "Ergonomic Chair",
        description: "Mesh office chair with lumbar support.",
        category: "Office",
        price: "349.00",
        stock: 25,
    },
    DemoProduct {
        sku: "MUG-CERAMIC",
        picture: include_bytes!("../demo-pictures/MUG-CERAMIC.png"),
        name: "Coffee Mug",
        description: "350 ml ceramic mug.",
        category: "Home",
        price: "12.50",
        stock: 400,
    },
];
