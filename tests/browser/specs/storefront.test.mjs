// The storefront end to end, in a real browser, through clicks and typing: a new customer
// registers, finds a product, buys two, and follows the order while alice (the admin) ships
// it; then the ways it can go wrong.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  BASE,
  cspViolations,
  flashText,
  follow,
  launch,
  person,
  rest,
  saveMeasurements,
  shot,
  signIn,
  signOut,
  unlabelledControls,
} from '../lib/harness.mjs';

const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
const shopper = { name: `Sam Shopper ${suffix}`, username: `sam${suffix}`, email: `sam${suffix}@example.com`, password: 'correct-horse-42' };
const ORDER_URL = /\/purchases\/[0-9a-f-]{36}$/;
/** The demo catalogue (crates/catalog/src/demo.rs), each with its drawn picture. */
const DEMO_PRODUCTS = [
  'Laptop', 'Mouse', 'Go Programming Book', 'iPhone', 'Mechanical Keyboard', '27-inch Monitor',
  'Noise-Cancelling Headphones', 'Rust in Practice', 'Designing Data-Intensive Applications', 'Desk Lamp',
  'Ergonomic Chair', 'Coffee Mug',
];

let browser;
let sam; // { context, page } of the new customer
let alice;
let orderId;
const measurements = {};

before(async () => {
  browser = await launch();
  sam = await person(browser);
  alice = await person(browser);
});

after(async () => {
  const out = saveMeasurements(measurements);
  console.log(`measurements: ${JSON.stringify(out)}`);
  await browser?.close();
});

/** Adds `quantity` of the product named `name` (found by searching) to the cart, on `page`. */
async function addToCart(page, name, quantity) {
  await page.goto('/products');
  await page.getByLabel('Search products').fill(name);
  await follow(page, page.getByRole('button', { name: 'Search' }));
  await follow(page, page.getByRole('link', { name, exact: true }));
  await page.getByLabel('Quantity').fill(String(quantity));
  await page.getByRole('button', { name: 'Add to cart', exact: true }).click();
  await page.waitForURL('**/cart');
}

/** As alice, creates a product through the admin form; returns its id. */
async function createProduct(name, price, stock) {
  const page = alice.page;
  await page.goto('/admin/products');
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Category', { exact: true }).fill('Test goods');
  await page.getByLabel('Price', { exact: true }).fill(price);
  await page.getByLabel('Units in stock').fill(String(stock));
  await page.getByLabel('Description').fill(`Made by the browser suite (${suffix}).`);
  await page.getByRole('button', { name: 'Create product' }).click();
  await page.waitForURL(/\/admin\/products\/\d+$/);
  assert.match(await flashText(page), /is on sale/);
  return Number(new URL(page.url()).pathname.split('/').pop());
}

describe('the main journey', () => {
  test('a visitor registers, signs out and signs in again', async () => {
    const { page } = sam;
    await page.goto('/register');
    await shot(page, 'register');
    assert.deepEqual(await unlabelledControls(page), []);
    await page.getByLabel('Your name').fill(shopper.name);
    await page.getByLabel('Username').fill(shopper.username);
    await page.getByLabel('E-mail').fill(shopper.email);
    await page.getByLabel('Password', { exact: true }).fill(shopper.password);
    await page.getByLabel('Repeat the password').fill(shopper.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL('**/home');
    assert.match(await flashText(page), /Welcome, Sam Shopper/);
    assert.match(await page.locator('.who').innerText(), /Sam Shopper/);
    await signOut(page);
    assert.match(await flashText(page), /signed out/);
    // Seed 004's sign-in page is the root.
    await shot(page, 'sign-in');
    await signIn(page, shopper.username, shopper.password, { path: '/' });
    assert.equal(new URL(page.url()).pathname, '/home');
    assert.match(await flashText(page), /Welcome back/);
    await shot(page, 'home');
  });

  test('finds a product, adds two to the cart and checks out', async () => {
    const { page } = sam;
    await page.goto('/products');
    await follow(page, page.getByRole('link', { name: /^Electronics/ }));
    assert.match(await page.locator('h1').innerText(), /Electronics/);
    await page.getByLabel('Search products').fill('Mouse');
    await follow(page, page.getByRole('button', { name: 'Search' }));
    await shot(page, 'catalogue-search');
    await page.getByRole('link', { name: 'Mouse', exact: true }).click();
    assert.match(await page.locator('.price.big').innerText(), /\$\d+\.\d\d/);
    assert.match(await page.locator('.stock').innerText(), /In stock|left/);
    await shot(page, 'product');
    await page.getByLabel('Quantity').fill('2');
    await page.getByRole('button', { name: 'Add to cart', exact: true }).click();
    await page.waitForURL('**/cart');
    assert.match(await flashText(page), /Added 2 × Mouse/);
    assert.equal(await page.getByLabel('Quantity of Mouse').inputValue(), '2');
    assert.equal(await page.locator('nav .count').innerText(), '2');
    await shot(page, 'cart');
    await page.getByRole('button', { name: /^Check out/ }).click();
    await page.waitForURL(ORDER_URL);
    orderId = new URL(page.url()).pathname.split('/').pop();
    assert.match(await flashText(page), /order is placed/);
    assert.match(await page.locator('#order-status').innerText(), /pending/i);
    assert.equal(await page.locator('nav .count').innerText(), '0', 'the cart is empty after checkout');
    await shot(page, 'order');
  });

  test('sees the order in purchases, and over REST', async () => {
    const { page } = sam;
    await page.getByRole('link', { name: 'Purchases', exact: true }).click();
    await page.waitForURL('**/purchases');
    const card = page.locator('li.order', { has: page.locator(`a[href="/purchases/${orderId}"]`) });
    assert.match(await card.innerText(), /2 × Mouse/);
    await shot(page, 'purchases');
    const api = await rest(shopper.username, shopper.password);
    const res = await api.get(`/api/orders/${orderId}`);
    assert.equal(res.status(), 200);
    const order = await res.json();
    assert.equal(order.items[0].quantity, 2);
    assert.equal(order.status, 'pending');
    // …and the other way round: an order made over REST is in the browser's list.
    const made = await api.post('/api/orders', { items: [{ name: 'Coffee Mug', quantity: 1 }] }, { 'idempotency-key': `rest-${suffix}` });
    assert.equal(made.status(), 201);
    const restOrder = await made.json();
    await page.reload();
    assert.equal(await page.locator(`a[href="/purchases/${restOrder.id}"]`).count(), 1);
    await api.dispose();
  });

  test('alice confirms, then ships it', async () => {
    const { page } = alice;
    // By keyboard: the skip link comes first; the sign-in form has the focus, is typed into
    // and submitted with Enter.
    await page.goto('/products');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to main content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
    await page.goto('/login');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'login', 'the first field has the focus');
    await page.keyboard.type('alice');
    await page.keyboard.press('Tab');
    await page.keyboard.type('alice123');
    await page.keyboard.press('Enter');
    await page.waitForURL('**/home');
    // The admin area opens on the dashboard (which starts sampling the metrics it charts).
    await follow(page, page.getByRole('link', { name: 'Admin' }));
    assert.match(await page.locator('h1').innerText(), /Administration/);
    await follow(page, page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Orders' }));
    await page.getByLabel('Customer (username)').fill(shopper.username);
    await follow(page, page.getByRole('button', { name: 'Filter' }));
    const row = page.locator(`#order-${orderId}`);
    assert.match(await row.innerText(), /pending/i);
    await follow(page, row.getByRole('button', { name: /^Confirm/ }));
    assert.match(await flashText(page), /now confirmed/);
    assert.match(await page.locator(`#order-${orderId}`).innerText(), /confirmed/i);
    await follow(page, page.locator(`#order-${orderId}`).getByRole('button', { name: /^Ship/ }));
    assert.match(await flashText(page), /now shipped/);
    assert.match(await page.locator(`#order-${orderId}`).innerText(), /shipped/i);
    await shot(page, 'admin-orders');

    // The shopper's checkout, traced: the Traces page lists it, and its waterfall draws the
    // gateway, the orders service and the catalog (the event's work may still be on its way).
    await follow(page, page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Traces' }));
    await page.getByLabel('Operation contains').fill('POST /checkout');
    await follow(page, page.getByRole('button', { name: 'Filter' }));
    await follow(page, page.getByRole('link', { name: 'gateway POST /checkout' }).last());
    const picture = page.getByRole('img', { name: /Waterfall of trace/ });
    assert.equal(await picture.count(), 1);
    assert.ok((await picture.locator('g.span').count()) >= 4, 'a bar for each span');
    const spans = await page.locator('table.spans tbody th').allInnerTexts();
    for (const name of ['gateway POST /checkout', 'orders POST /orders', 'catalog POST /reservations']) {
      assert.ok(spans.includes(name), `${name} among ${spans}`);
    }
    await shot(page, 'admin-trace');
  });

  test('the customer sees the status change, with its history', async () => {
    const { page } = sam;
    await page.goto(`/purchases/${orderId}`);
    assert.match(await page.locator('#order-status').innerText(), /shipped/i);
    const history = await page.locator('ol.history li').allInnerTexts();
    assert.deepEqual(history.map((h) => h.split(' ')[0].toLowerCase()), ['pending', 'confirmed', 'shipped']);
    assert.match(history[1], /by the shop/);
    await shot(page, 'order-shipped');
  });
});

describe('what can go wrong', () => {
  test('a wrong password says so', async () => {
    const { context, page } = await person(browser);
    await page.goto('/');
    await page.getByLabel('Username or e-mail').fill('bob');
    await page.getByLabel('Password', { exact: true }).fill('not-bobs-password');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    assert.equal(res.status(), 401);
    assert.match(await page.getByRole('alert').innerText(), /Wrong username, e-mail or password/);
    assert.equal(await page.getByLabel('Username or e-mail').inputValue(), 'bob', 'the name is kept');
    await shot(page, 'wrong-password');
    await context.close();
  });

  test('failed sign-ins slow the account down but never lock its owner out', async () => {
    const { context, page } = await person(browser);
    for (let i = 0; i < 6; i++) {
      await page.goto('/login');
      await page.getByLabel('Username or e-mail').fill(shopper.username);
      await page.getByLabel('Password', { exact: true }).fill(`guess-${i}`);
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST'),
        page.getByRole('button', { name: 'Sign in' }).click(),
      ]);
      assert.equal(res.status(), 401, `guess ${i}: wrong, not locked out`);
    }
    // Six failures: the next attempt waits (1 s) before its password is checked, and the
    // right one still signs in.
    const started = Date.now();
    await signIn(page, shopper.username, shopper.password);
    const waited = Date.now() - started;
    assert.equal(new URL(page.url()).pathname, '/home', 'the owner signs in');
    assert.ok(waited >= 500, `the attempt after six failures was slowed (${waited} ms)`);
    await context.close();
  });

  test('registering a taken username says so', async () => {
    const { context, page } = await person(browser);
    await page.goto('/register');
    await page.getByLabel('Your name').fill('Another Sam');
    await page.getByLabel('Username').fill(shopper.username);
    await page.getByLabel('E-mail').fill(`other${suffix}@example.com`);
    await page.getByLabel('Password', { exact: true }).fill('another-password-1');
    await page.getByLabel('Repeat the password').fill('another-password-1');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Create account' }).click(),
    ]);
    assert.equal(res.status(), 409);
    assert.match(await page.getByRole('alert').innerText(), /taken|already|exists/i);
    assert.equal(await page.getByLabel('Your name').inputValue(), 'Another Sam', 'what was typed is kept');
    await context.close();
  });

  test('out of stock: alice makes a product with one unit; two cannot be bought', async () => {
    const name = `Last Lamp ${suffix}`;
    await createProduct(name, '12.50', 1);
    const { page } = sam;
    const api = await rest(shopper.username, shopper.password);
    const before = await api.orderCount();
    await addToCart(page, name, 2);
    assert.match(await page.locator('.cart').innerText(), /Only 1 available now/);
    await follow(page, page.getByRole('button', { name: /^Check out/ }));
    assert.equal(new URL(page.url()).pathname, '/cart');
    assert.match(await flashText(page), /Not enough stock: Only 1 of .* available; 2 requested/);
    await shot(page, 'out-of-stock');
    assert.equal(await api.orderCount(), before, 'no order was made');
    await follow(page, page.getByRole('button', { name: `Remove ${name}` }));
    assert.match(await page.locator('main').innerText(), /Your cart is empty/);
    await api.dispose();
  });

  test('a price changed since it went in the cart is shown, then confirmed', async () => {
    const name = `Price Pen ${suffix}`;
    const id = await createProduct(name, '2.00', 10);
    const { page } = sam;
    await addToCart(page, name, 1);
    await alice.page.goto(`/admin/products/${id}`);
    await alice.page.getByLabel('Price (USD)').fill('2.50');
    await follow(alice.page, alice.page.getByRole('button', { name: 'Set price' }));
    assert.match(await flashText(alice.page), /now costs \$2\.50/);
    await page.reload();
    assert.match(await page.locator('.cart').innerText(), /Was \$2\.00/);
    await follow(page, page.getByRole('button', { name: /^Check out/ }));
    assert.equal(new URL(page.url()).pathname, '/cart');
    assert.match(await flashText(page), /The price changed: .*2\.50 now, not 2\.00; nothing was ordered/);
    await page.getByRole('button', { name: /^Check out/ }).click();
    await page.waitForURL(ORDER_URL);
    assert.match(await page.locator('#order-total').innerText(), /\$2\.50/);
  });

  test('a double click on checkout makes one order', async () => {
    const { page } = sam;
    const api = await rest(shopper.username, shopper.password);
    const before = await api.orderCount();
    await addToCart(page, 'Coffee Mug', 1);
    await page.getByRole('button', { name: /^Check out/ }).dblclick();
    await page.waitForURL(ORDER_URL);
    await page.waitForTimeout(1000); // let a second submission, if any, finish
    assert.equal(await api.orderCount(), before + 1);
    await api.dispose();
  });

  test('the same checkout form sent twice at once, and once more later, makes one order', async () => {
    const { page, context } = sam;
    const api = await rest(shopper.username, shopper.password);
    const before = await api.orderCount();
    await addToCart(page, 'Coffee Mug', 3);
    const form = {
      _csrf: await page.locator('#checkout input[name=_csrf]').inputValue(),
      key: await page.locator('#checkout input[name=key]').inputValue(),
    };
    const send = () => context.request.post('/checkout', { form, maxRedirects: 0 });
    const [a, b] = await Promise.all([send(), send()]);
    assert.equal(a.status(), 303);
    assert.equal(b.status(), 303);
    assert.match(a.headers().location, ORDER_URL);
    assert.equal(a.headers().location, b.headers().location, 'both answers lead to the same order');
    const again = await send();
    assert.equal(again.headers().location, '/cart', 'a resubmission after the order finds an empty cart');
    await page.goto('/cart');
    assert.match(await flashText(page), /cart is empty, so nothing was ordered/);
    assert.equal(await api.orderCount(), before + 1);
    await api.dispose();
  });

  test('a form without its CSRF token is refused with 403', async () => {
    const { page, context } = sam;
    await page.goto('/products/1');
    await page.evaluate(() => document.querySelectorAll('input[name=_csrf]').forEach((e) => e.remove()));
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/cart/add')),
      page.getByRole('button', { name: 'Add to cart', exact: true }).click(),
    ]);
    assert.equal(res.status(), 403);
    assert.match(await page.locator('h1').innerText(), /Form expired/);
    await shot(page, 'csrf-refused');
    const direct = await context.request.post('/cart/add', { form: { product_id: '1', quantity: '1' }, maxRedirects: 0 });
    assert.equal(direct.status(), 403);
    await page.goto('/cart');
    assert.match(await page.locator('main').innerText(), /Your cart is empty/, 'nothing was added');
  });

  test('a customer opening an admin page gets 403', async () => {
    const { page } = sam;
    for (const path of ['/admin', '/admin/orders', '/admin/products', '/admin/users', '/admin/traces']) {
      const res = await page.goto(path);
      assert.equal(res.status(), 403, path);
      assert.match(await page.locator('main').innerText(), /for the shop's administrators/);
    }
    assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0, 'no admin link for customers');
    await shot(page, 'forbidden');
  });

  test("another customer opening this customer's order gets 404", async () => {
    const bob = await person(browser);
    await signIn(bob.page, 'bob', 'bob123');
    const res = await bob.page.goto(`/purchases/${orderId}`);
    assert.equal(res.status(), 404);
    assert.match(await bob.page.locator('main').innerText(), /no such order/i);
    await bob.context.close();
  });
});

describe('the rest of the account', () => {
  test('the profile can be edited and the password changed', async () => {
    const { page } = sam;
    await follow(page, page.getByRole('link', { name: 'Profile' }));
    assert.deepEqual(await unlabelledControls(page), []);
    await page.getByLabel('Name', { exact: true }).fill(`Samantha ${suffix}`);
    await follow(page, page.getByRole('button', { name: 'Save' }));
    assert.match(await flashText(page), /details are saved/);
    assert.match(await page.locator('.who').innerText(), /Samantha/);
    await page.getByLabel('Current password').fill(shopper.password);
    await page.getByLabel('New password', { exact: true }).fill('a-brand-new-pass-7');
    await page.getByLabel('Repeat the new password').fill('a-brand-new-pass-7');
    await follow(page, page.getByRole('button', { name: 'Change password' }));
    assert.match(await flashText(page), /password is changed/);
    await shot(page, 'profile');
    await signOut(page);
    await signIn(page, shopper.username, 'a-brand-new-pass-7');
    assert.equal(new URL(page.url()).pathname, '/home');
    shopper.password = 'a-brand-new-pass-7';
  });

  test('the session outlives its access token (refreshed transparently)', async (t) => {
    const ttl = Number(process.env.TOKEN_TTL_SECONDS ?? 0);
    if (!ttl || ttl > 60) {
      t.skip('the server runs with long-lived access tokens');
      return;
    }
    const { page, context } = sam;
    const cookieOf = async () => (await context.cookies()).find((c) => c.name.endsWith('om_session'))?.value;
    await page.goto('/purchases');
    const first = await cookieOf();
    await page.waitForTimeout((ttl - 15) * 1000); // the access token is then about to expire
    const res = await page.goto('/purchases');
    assert.equal(res.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/purchases', 'still signed in');
    assert.notEqual(await cookieOf(), first, 'the session cookie carries new tokens');
    await page.goto(`/purchases/${orderId}`);
    assert.match(await page.locator('#order-status').innerText(), /shipped/i);
  });
});

describe('any screen, any visitor', () => {
  test('the catalogue reads at phone width', async () => {
    const { context, page } = await person(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await page.goto('/products');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling (${overflow}px too wide)`);
    assert.deepEqual(await unlabelledControls(page), []);
    await shot(page, 'catalogue-phone');
    await context.close();
  });

  test('page weight of the catalogue, with its assets, for a first visit', async () => {
    const { context, page } = await person(browser);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const requests = new Map();
    cdp.on('Network.responseReceived', (e) => requests.set(e.requestId, { url: e.response.url, bytes: 0 }));
    cdp.on('Network.loadingFinished', (e) => {
      const r = requests.get(e.requestId);
      if (r) r.bytes = e.encodedDataLength;
    });
    const res = await page.goto('/products', { waitUntil: 'networkidle' });
    assert.equal(res.status(), 200);
    const items = [...requests.values()];
    const total = items.reduce((n, r) => n + r.bytes, 0);
    measurements.catalogue_page_weight = {
      total_bytes: total,
      requests: items.map((r) => ({ url: r.url.replace(BASE, ''), bytes: r.bytes })),
    };
    assert.ok(items.every((r) => r.url.startsWith(BASE)), 'nothing from another origin');
    measurements.catalogue_page_weight.pictures = items.filter((r) => r.url.endsWith('.jpg')).length;
    assert.ok(total < 150_000, `catalogue weighs ${total} bytes, pictures included`);
    const headers = res.headers();
    assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(headers['x-frame-options'], 'DENY');
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.ok(headers['referrer-policy']);
    await shot(page, 'catalogue');
    await context.close();
  });

  test('every demo product shows its picture, and a second visit takes them from the cache', async () => {
    const { context, page } = await person(browser);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    let pictures = new Map();
    // Chromium says "served from cache" before it reports the response.
    const servedFromCache = new Set();
    cdp.on('Network.requestServedFromCache', (e) => servedFromCache.add(e.requestId));
    cdp.on('Network.responseReceived', (e) => {
      if (e.type !== 'Image') return;
      const cached = Boolean(e.response.fromDiskCache || e.response.fromMemoryCache) || servedFromCache.has(e.requestId);
      pictures.set(e.requestId, { url: e.response.url.replace(BASE, ''), status: e.response.status, cached });
    });
    /** Opens each demo category and waits for every card's picture to be drawn. */
    async function visit() {
      const shown = [];
      for (const category of ['Electronics', 'Books', 'Office', 'Home']) {
        await page.goto(`/products?category=${category}`);
        for (const card of await page.locator('ul.products li.card').all()) {
          const img = card.locator('img.thumb');
          await img.scrollIntoViewIfNeeded();
          const width = await img.evaluate((el) =>
            el.complete && el.naturalWidth
              ? el.naturalWidth
              : new Promise((ok) => el.addEventListener('load', () => ok(el.naturalWidth), { once: true })),
          );
          shown.push({ name: await card.locator('h2').innerText(), width, alt: await img.getAttribute('alt') });
        }
        await shot(page, `catalogue-pictures-${category.toLowerCase()}`);
      }
      return shown;
    }
    const shown = await visit();
    for (const name of DEMO_PRODUCTS) {
      const card = shown.find((c) => c.name === name);
      assert.ok(card, `${name} is in the catalogue`);
      assert.ok(card.width > 0, `${name}'s picture was drawn`);
      assert.ok(card.alt.includes(name), `${name}'s picture says what it shows: ${card.alt}`);
    }
    const first = [...pictures.values()];
    assert.ok(first.length >= DEMO_PRODUCTS.length, `${first.length} pictures loaded`);
    assert.ok(first.every((r) => r.url.startsWith('/api/products/') && r.status === 200), JSON.stringify(first));

    pictures = new Map();
    await visit();
    const second = [...pictures.values()];
    measurements.pictures_second_visit = {
      requests: second.length,
      from_cache: second.filter((r) => r.cached).length,
      revalidated_304: second.filter((r) => r.status === 304).length,
    };
    assert.ok(second.length >= DEMO_PRODUCTS.length, `${second.length} pictures on the second visit`);
    assert.ok(second.every((r) => r.cached || r.status === 304), `not from cache: ${JSON.stringify(second)}`);
    await context.close();
  });

  test('the admin dashboard shows health and metrics as a picture', async () => {
    const { page } = alice;
    await page.goto('/admin');
    assert.match(await page.locator('#health-title').innerText(), /ok/i);
    assert.equal(await page.locator('table.health tbody tr').count(), 3);
    assert.equal(await page.locator('figure.chart svg[role=img]').count(), 2);
    const requests = Number(await page.locator('#kpi-requests').innerText());
    assert.ok(requests > 0, `requests per minute: ${requests}`);
    assert.ok((await page.locator('figure.chart polyline').count()) >= 2, 'lines, sampled over the whole run');
    await shot(page, 'admin-dashboard');
  });

  test('no page broke its own Content-Security-Policy (no inline script or style anywhere)', () => {
    assert.deepEqual(cspViolations, []);
  });
});
