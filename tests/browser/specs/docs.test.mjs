// The API documentation pages in a real browser: Swagger UI and ReDoc render from assets built
// into the binary (no network beyond the gateway), and a request made from Swagger UI's
// "Try it out" reaches the running platform and comes back.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BASE, launch, person, shot } from '../lib/harness.mjs';

let browser;
let reader;
const foreign = [];

before(async () => {
  browser = await launch();
  reader = await person(browser);
  // Anything the pages fetch from anywhere but the gateway is a failure.
  reader.page.on('request', (req) => {
    const url = new URL(req.url());
    if (!['127.0.0.1', 'localhost'].includes(url.hostname) && !req.url().startsWith('data:') && !req.url().startsWith('blob:')) {
      foreign.push(req.url());
    }
  });
});

after(async () => {
  await browser?.close();
});

describe('API documentation', () => {
  test('Swagger UI renders the public API and "Try it out" calls the platform', async () => {
    const { page } = reader;
    await page.goto(`${BASE}/docs/`);
    await page.getByText('ordermesh API', { exact: false }).first().waitFor();
    const operation = page.locator('.opblock-get').filter({ hasText: '/api/products/{id}' }).first();
    await operation.locator('.opblock-summary').click();
    // The docs open with "Try it out" already on (tryItOutEnabled); press it only if shown.
    const tryIt = operation.getByRole('button', { name: 'Try it out' });
    if (await tryIt.isVisible()) await tryIt.click();
    await operation.locator('input[placeholder="id"]').fill('1');
    const answered = page.waitForResponse((res) => new URL(res.url()).pathname === '/api/products/1');
    await operation.getByRole('button', { name: 'Execute' }).click();
    const res = await answered;
    assert.equal(res.status(), 200);
    await operation.locator('.live-responses-table .response-col_status').first().waitFor();
    const body = await operation.locator('.live-responses-table .microlight').first().textContent();
    assert.match(body, /"name": "Laptop"/);
    await shot(page, 'docs-swagger');
  });

  test('ReDoc renders the same document', async () => {
    const { page } = reader;
    await page.goto(`${BASE}/redoc`);
    await page.getByText('ordermesh API', { exact: false }).first().waitFor({ timeout: 30_000 });
    await page.getByText('/api/orders', { exact: false }).first().waitFor();
    await shot(page, 'docs-redoc');
  });

  test('nothing was loaded from outside the platform', () => {
    assert.deepEqual(foreign, []);
  });
});
