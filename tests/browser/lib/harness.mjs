// Shared helpers for the storefront's browser specs: Debian's Chromium through playwright-core
// (no browser download), one context per person, screenshots and timings into artifacts/.

import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, request } from 'playwright-core';

export const BASE = process.env.BASE_URL ?? 'http://127.0.0.1:8080';
export const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
mkdirSync(ARTIFACTS, { recursive: true });

/**
 * A fresh headless Chromium; `launch` gives it a fresh temporary user-data-dir. QUIC is off
 * (pages over TCP, as most users meet them) unless `quic` is asked for (WebTransport needs it).
 */
export async function launch(extraArgs = [], { quic = false } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      ...(quic ? [] : ['--disable-quic']),
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}

/** Server-Timing of every page (HTML document) the specs load, by route. */
export const timings = [];

/** What the browser reported as blocked by the Content-Security-Policy (should stay empty). */
export const cspViolations = [];

/** The route a path belongs to, ids folded: /purchases/0192… → /purchases/{id}. */
export function route(path) {
  return path
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '{id}')
    .replace(/\/\d+(?=\/|$)/g, '/{id}');
}

/** A person: their own browser context (cookies), one page. */
export async function person(browser, options = {}) {
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(`${page.url()}: ${msg.text()}`);
  });
  page.on('response', async (res) => {
    if (res.request().resourceType() !== 'document') return;
    const header = (await res.allHeaders())['server-timing'] ?? '';
    const app = /app;dur=([\d.]+)/.exec(header);
    const upstream = /upstream;dur=([\d.]+);desc="(\d+)/.exec(header);
    if (app) {
      const url = new URL(res.url());
      timings.push({
        method: res.request().method(),
        route: route(url.pathname),
        status: res.status(),
        app_ms: Number(app[1]),
        upstream_ms: upstream ? Number(upstream[1]) : null,
        calls: upstream ? Number(upstream[2]) : null,
      });
    }
  });
  return { context, page };
}

export async function shot(page, name) {
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

/** Clicks (a button or link) and waits for the page it leads to. */
export async function follow(page, locator) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), locator.click()]);
}

/** Signs in through the form, by clicks and typing. */
export async function signIn(page, login, password, { path = '/login' } = {}) {
  await page.goto(path);
  await page.getByLabel('Username or e-mail').fill(login);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await follow(page, page.getByRole('button', { name: 'Sign in' }));
}

export async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((u) => new URL(u).pathname === '/');
}

/** Every visible form control on the page has a label (or an aria-label). */
export async function unlabelledControls(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label'))
      .map((e) => e.outerHTML),
  );
}

/** The text of the page's flash message or alert. */
export async function flashText(page) {
  const flash = page.locator('.flash').first();
  return (await flash.count()) ? (await flash.innerText()).trim() : '';
}

/** A REST client of the same platform (the public API through the gateway). */
export async function rest(username, password) {
  const api = await request.newContext({ baseURL: BASE });
  const res = await api.post('/api/users/login', { data: { username, password } });
  if (!res.ok()) throw new Error(`REST sign-in of ${username}: ${res.status()} ${await res.text()}`);
  const { access_token } = await res.json();
  const headers = { authorization: `Bearer ${access_token}` };
  return {
    get: (path) => api.get(path, { headers }),
    post: (path, data, extra = {}) => api.post(path, { data, headers: { ...headers, ...extra } }),
    async orderCount() {
      const r = await api.get('/api/orders?per_page=1', { headers });
      return (await r.json()).total;
    },
    dispose: () => api.dispose(),
  };
}

export function saveMeasurements(extra) {
  const byRoute = {};
  for (const t of timings) {
    const key = `${t.method} ${t.route}`;
    (byRoute[key] ??= []).push(t);
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.floor((s.length - 1) / 2)] : null;
  };
  const summary = Object.entries(byRoute)
    .map(([key, ts]) => ({
      page: key,
      samples: ts.length,
      median_app_ms: median(ts.map((t) => t.app_ms)),
      max_app_ms: Math.max(...ts.map((t) => t.app_ms)),
      median_upstream_ms: median(ts.map((t) => t.upstream_ms ?? 0)),
      median_calls: median(ts.map((t) => t.calls ?? 0)),
    }))
    .sort((a, b) => a.page.localeCompare(b.page));
  const out = { ...extra, server_timing: summary };
  writeFileSync(`${ARTIFACTS}measurements.json`, JSON.stringify(out, null, 2));
  return out;
}
