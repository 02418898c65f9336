//! The demo catalogue, created on first start in development mode. It carries every product
//! the seed documents use in their examples, at the prices their examples expect (seed 000's
//! client orders a Laptop at 999.99 and two Mice at 29.99, totalling 1059.97; seed 001 orders a
//! "Go Programming Book" at 29.99; seed 002 lists Electronics such as an iPhone).

pub struct DemoProduct {
    pub sku: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub price: &'static str,
    pub stock: i64,
}

pub const DEMO_PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        sku: "LAPTOP-15",
        name: "Laptop",
        description: "15-inch laptop, 16 GB RAM, 512 GB SSD.",
        category: "Electronics",
        price: "999.99",
        stock: 50,
    },
    DemoProduct {
        sku: "MOUSE-WL",
        name: "Mouse",
        description: "Wireless optical mouse.",
        category: "Electronics",
        price: "29.99",
        stock: 500,
    },
    DemoProduct {
        sku: "BOOK-GO",
        name: "Go Programming Book",
        description: "A practical introduction to Go.",
        category: "Books",
        price: "29.99",
        stock: 300,
    },
    DemoProduct {
        sku: "IPHONE-15",
        name: "iPhone",
        description: "Smartphone, 128 GB.",
        category: "Electronics",
        price: "799.00",
        stock: 80,
    },
    DemoProduct {
        sku: "KEYB-MECH",
        name: "Mechanical Keyboard",
        description: "Tenkeyless keyboard with brown switches.",
        category: "Electronics",
        price: "89.50",
        stock: 120,
    },
    DemoProduct {
        sku: "MON-27",
        name: "27-inch Monitor",
        description: "27-inch 1440p IPS monitor.",
        category: "Electronics",
        price: "279.00",
        stock: 40,
    },
    DemoProduct {
        sku: "HEAD-NC",
        name: "Noise-Cancelling Headphones",
        description: "Over-ear Bluetooth headphones.",
        category: "Electronics",
        price: "199.00",
        stock: 75,
    },
    DemoProduct {
        sku: "BOOK-RUST",
        name: "Rust in Practice",
        description: "Writing reliable systems software in Rust.",
        category: "Books",
        price: "44.90",
        stock: 150,
    },
    DemoProduct {
        sku: "BOOK-DDIA",
        name: "Designing Data-Intensive Applications",
        description: "The big ideas behind reliable, scalable systems.",
        category: "Books",
        price: "39.99",
        stock: 90,
    },
    DemoProduct {
        sku: "DESK-LAMP",
        name: "Desk Lamp",
        description: "LED desk lamp with adjustable colour temperature.",
        category: "Office",
        price: "34.00",
        stock: 60,
    },
    DemoProduct {
        sku: "CHAIR-ERGO",
        name: "Ergonomic Chair",
        description: "Mesh office chair with lumbar support.",
        category: "Office",
        price: "349.00",
        stock: 25,
    },
    DemoProduct {
        sku: "MUG-CERAMIC",
        name: "Coffee Mug",
        description: "350 ml ceramic mug.",
        category: "Home",
        price: "12.50",
        stock: 400,
    },
];
