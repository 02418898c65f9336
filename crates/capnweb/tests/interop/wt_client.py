"""The interop target over WebTransport, with a WebTransport client of another implementation:
aioquic (PyPI), the HTTP/3 stack the Python fork builds its WebTransport on. It opens the
session with an extended CONNECT (`:protocol` webtransport), pins the server's self-signed
certificate by its SHA-256 as a browser's serverCertificateHashes does, and speaks Cap'n Web
on one bidirectional stream per session, one line of JSON per message.

Every scenario is sent twice, once over WebTransport and once over the target's WebSocket
(`/rpc/ws`), each on a fresh session; the answers must be the same, line for line.

Usage: python wt_client.py ws://127.0.0.1:PORT/rpc/ws https://127.0.0.1:UDPPORT/rpc/wt SHA256HEX
Exits non-zero on any difference or failure.
"""

import asyncio
import hashlib
import json
import ssl
import sys
from urllib.parse import urlparse

import websockets
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, StreamDataReceived, StreamReset
from cryptography.hazmat.primitives.serialization import Encoding
from py_client import check  # the same ok/FAIL lines and failure count as the other client
import py_client

ANSWER_TIMEOUT = 10

# name -> (messages sent, how many answers to read)
SCENARIOS = {
    "square": (['["push",["pipeline",0,["square"],[7]]]', '["pull",1]'], 1),
    "a counter made and incremented, pipelined": (
        [
            '["push",["pipeline",0,["makeCounter"],[5]]]',
            '["push",["pipeline",1,["increment"],[3]]]',
            '["pull",2]',
        ],
        1,
    ),
    "RangeError": (['["push",["pipeline",0,["throwError"],[]]]', '["pull",1]'], 1),
    "special values echoed": (
        [
            '["push",["pipeline",0,["echo"],[{"b":["bytes","aGVsbG8="],"d":["date",1700000000000],'
            '"n":["bigint","12345678901234567890"],"u":["undefined"],"i":["inf"]}]]]',
            '["pull",1]',
        ],
        1,
    ),
    "fibonacci": (['["push",["pipeline",0,["generateFibonacci"],[10]]]', '["pull",1]'], 1),
    "unknown method": (['["push",["pipeline",0,["nope"],[]]]', '["pull",1]'], 1),
}

# Over the 4 MiB message limit, with no newline: the session ends with an abort naming it.
OVERSIZE = '["push",["pipeline",0,["echo"],["' + "x" * (5 << 20)

class WebTransportClient(QuicConnectionProtocol):
    """An HTTP/3 connection carrying one WebTransport session; its streams' bytes go to queues."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = None
        self.session_id = None
        self.answered = asyncio.get_event_loop().create_future()
        self.streams = {}

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self.http = H3Connection(self._quic, enable_webtransport=True)
        # Our sessions' streams carry Cap'n Web lines, not HTTP/3 frames: read them here.
        if isinstance(event, StreamDataReceived) and event.stream_id in self.streams:
            queue = self.streams[event.stream_id]
            if event.data:
                queue.put_nowait(event.data)
            if event.end_stream:
                queue.put_nowait(None)
            return
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            self.streams[event.stream_id].put_nowait(None)
            return
        if self.http is None:
            return
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                if not self.answered.done():
                    self.answered.set_result(dict(h3_event.headers).get(b":status"))

    async def open_session(self, authority, path):
        for _ in range(100):
            if self.http is not None:
                break
            await asyncio.sleep(0.01)
        self.session_id = self._quic.get_next_available_stream_id()
        self.http.send_headers(
            self.session_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"origin", f"https://{authority}".encode()),
            ],
        )
        self.transmit()
        return await asyncio.wait_for(self.answered, ANSWER_TIMEOUT)

    def open_stream(self):
        stream_id = self.http.create_webtransport_stream(self.session_id, is_unidirectional=False)
        self.streams[stream_id] = asyncio.Queue()
        self.transmit()
        return WebTransportLines(self, stream_id)


class WebTransportLines:
    def __init__(self, client, stream_id):
        self.client, self.stream_id, self.pending = client, stream_id, b""

    async def send(self, text):
        self.client._quic.send_stream_data(self.stream_id, text.encode())
        self.client.transmit()

    async def next(self):
        """The next line, or None once the server ended the stream."""
        queue = self.client.streams[self.stream_id]
        while b"\n" not in self.pending:
            chunk = await asyncio.wait_for(queue.get(), ANSWER_TIMEOUT)
            if chunk is None:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


class WebSocketLines:
    def __init__(self, socket):
        self.socket, self.lines = socket, []

    async def send(self, text):
        await self.socket.send(text.rstrip("\n"))

    async def next(self):
        while not self.lines:
            try:
                frame = await asyncio.wait_for(self.socket.recv(), ANSWER_TIMEOUT)
            except websockets.ConnectionClosed:
                return None
            self.lines = frame.split("\n") if isinstance(frame, str) else frame.decode().split("\n")
        return self.lines.pop(0)


async def answers(session, messages, count):
    await session.send("".join(m + "\n" for m in messages))
    return [await session.next() for _ in range(count)]


async def main(ws_url, wt_url, expected_hash):
    target = urlparse(wt_url)
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    # Pinned by hash below instead of by a certificate authority, as browsers do.
    configuration.verify_mode = ssl.CERT_NONE
    async with connect(
        target.hostname, target.port, configuration=configuration, create_protocol=WebTransportClient
    ) as client:
        certificate = client._quic.tls._peer_certificate
        presented = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
        check("the certificate has the announced SHA-256", presented == expected_hash, presented)
        status = await client.open_session(target.netloc, target.path)
        check("the WebTransport session is accepted", status == b"200", repr(status))
        for name, (messages, count) in SCENARIOS.items():
            over_wt = await answers(client.open_stream(), messages, count)
            async with websockets.connect(ws_url) as socket:
                over_ws = await answers(WebSocketLines(socket), messages, count)
            same = over_wt == over_ws and None not in over_wt
            check(f"{name}: the same answers over WebTransport and WebSocket", same, f"{over_wt} vs {over_ws}")

        stream = client.open_stream()
        await stream.send(OVERSIZE)
        aborted = await stream.next()
        message = json.loads(aborted) if aborted else None
        check(
            "an over-size message ends the session with an abort naming the limit",
            message is not None and message[0] == "abort" and "4194304" in json.dumps(message),
            repr(aborted),
        )
        check("then the stream ends", await stream.next() is None)
        # The connection's other sessions are untouched.
        again = await answers(client.open_stream(), SCENARIOS["square"][0], 1)
        check("another session on the same connection still answers", again == ['["resolve",1,49]'], repr(again))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    print(f"WebTransport interop: {'PASS' if py_client.failures == 0 else 'FAIL'}")
    sys.exit(1 if py_client.failures else 0)
