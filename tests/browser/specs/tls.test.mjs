// The storefront and the API over HTTPS in a real browser: run.sh starts a second platform
// with a certificate of its own making (TLS_CERT_FILE/TLS_KEY_FILE) and tells Chromium to
// trust exactly that key (--ignore-certificate-errors-spki-list), so the page loads as a user's
// would, HTTP/2 chosen by ALPN, the session's Secure cookies kept and sent back.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, person, shot, signIn } from '../lib/harness.mjs';

const TLS_BASE = process.env.TLS_BASE_URL;
const SPKI = process.env.TLS_SPKI_SHA256;
const missing =
  !TLS_BASE || !SPKI || !process.env.TLS_API_TOKEN
    ? 'run.sh sets TLS_BASE_URL, TLS_SPKI_SHA256 and TLS_API_TOKEN (run the suite with run.sh)'
    : false;

let browser;
let shopper;

before(async () => {
  if (missing) return;
  browser = await launch([`--ignore-certificate-errors-spki-list=${SPKI}`]);
  shopper = await person(browser, { baseURL: TLS_BASE });
});

after(async () => {
  await browser?.close();
});

/** The protocol the page's own document came over (h2, http/1.1). */
const protocolOf = (page) => page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);

describe('over HTTPS', { skip: missing }, () => {
  test('the storefront loads over HTTP/2 with HSTS, and signing in keeps a Secure session', async () => {
    const { page, context } = shopper;
    const res = await page.goto('/');
    assert.equal(res.status(), 200);
    assert.match((await res.allHeaders())['strict-transport-security'] ?? '', /^max-age=\d+/);
    assert.equal(await protocolOf(page), 'h2');
    assert.equal(new URL(page.url()).protocol, 'https:');

    await signIn(page, 'bob', 'bob123');
    assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible(), 'signed in over HTTPS');
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name.endsWith('om_session'));
    assert.ok(session, `a session cookie: ${cookies.map((c) => c.name)}`);
    assert.equal(session.secure, true, 'the session cookie is Secure');
    assert.ok(session.name.startsWith('__Host-'), session.name);
    await shot(page, 'tls-signed-in');
  });

  test('the API answers Chromium over HTTP/2, a bearer token included', async () => {
    // The storefront's CSP forbids its pages to fetch(); the browser loads the API directly.
    // The token is bob's, signed in with curl by run.sh.
    const page = await shopper.context.newPage();
    await page.setExtraHTTPHeaders({ authorization: `Bearer ${process.env.TLS_API_TOKEN}` });
    const res = await page.goto('/api/users/me');
    assert.equal(res.status(), 200);
    assert.equal(await protocolOf(page), 'h2');
    const me = JSON.parse(await page.locator('body').innerText());
    assert.equal(me.username, 'bob');
    await page.close();
  });
});
