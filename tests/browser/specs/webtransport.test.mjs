// The Cap'n Web shop over WebTransport in a real browser: Chromium opens a WebTransport
// session to the gateway (HTTP/3 over QUIC, UDP on the gateway's port number), pinning the
// gateway's self-signed certificate by the hash `GET /rpc/wt` gives (serverCertificateHashes),
// and drives it with the npm `capnweb` client over a transport of a few lines: one
// bidirectional stream, one line of JSON per message.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { BASE, launch } from '../lib/harness.mjs';

// The package's ES module build, as a bundler would pick it for a browser.
const capnwebModule = readFileSync(fileURLToPath(import.meta.resolve('capnweb')), 'utf8');

let browser;
let page;

before(async () => {
  browser = await launch([], { quic: true });
  page = await browser.newPage();
  // The npm client, served to the page at the gateway's origin (nothing comes from elsewhere).
  await page.route('**/__capnweb.js', (route) =>
    route.fulfill({ contentType: 'text/javascript', body: capnwebModule }),
  );
  // A secure context at the gateway's origin (127.0.0.1 counts as one): WebTransport needs it.
  const res = await page.goto(`${BASE}/rpc/wt`);
  assert.equal(res.status(), 200);
});

after(async () => {
  await browser?.close();
});

describe('Cap\'n Web over WebTransport', () => {
  test('sign in, read the profile, list orders with .map(), over HTTP/3 from Chromium', async () => {
    const result = await page.evaluate(async () => {
      const { RpcSession } = await import('/__capnweb.js');
      const info = await (await fetch('/rpc/wt')).json();
      const transport = new WebTransport(info.url, {
        serverCertificateHashes: info.serverCertificateHashes.map((h) => ({
          algorithm: h.algorithm,
          value: Uint8Array.from(atob(h.value), (c) => c.charCodeAt(0)),
        })),
      });
      await transport.ready;
      const stream = await transport.createBidirectionalStream();
      const writer = stream.writable.getWriter();
      const reader = stream.readable.pipeThrough(new TextDecoderStream()).getReader();
      const encoder = new TextEncoder();
      let buffered = '';
      const lines = {
        send: (message) => writer.write(encoder.encode(`${message}\n`)),
        async receive() {
          for (;;) {
            const end = buffered.indexOf('\n');
            if (end >= 0) {
              const line = buffered.slice(0, end);
              buffered = buffered.slice(end + 1);
              return line;
            }
            const { value, done } = await reader.read();
            if (done) throw new Error('the server ended the stream');
            buffered += value;
          }
        },
        abort: (reason) => writer.abort(reason).catch(() => {}),
      };
      const api = new RpcSession(lines).getRemoteMain();
      const login = await api.login('bob', 'bob123');
      // Pipelined: the profile is asked for with the token before the login's answer is used.
      const profile = await api.getUserProfile(login.token);
      const user = await api.getUserByToken(login.token);
      const order = await api.createOrder(user, [{ name: 'Mouse', price: 29.99, quantity: 2 }]);
      const mine = await api.listOrders(user).map((o) => o.orderId);
      let wrong;
      try {
        await api.login('bob', 'wrong');
      } catch (e) {
        wrong = e.message;
      }
      transport.close();
      return { url: info.url, profile, orderId: order.orderId, mine, wrong };
    });
    assert.match(result.url, /^https:\/\/127\.0\.0\.1:\d+\/rpc\/wt$/);
    assert.equal(result.profile.username, 'bob');
    assert.ok(result.orderId, 'an order placed over WebTransport');
    assert.ok(result.mine.includes(result.orderId), `the new order among bob's: ${result.mine}`);
    assert.match(result.wrong ?? '', /password/i);
  });
});
