#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the benchmarks: the collector end of "export on".

It accepts `POST /v1/traces` with `application/x-protobuf` bodies (gzip or not), decodes each
one as an `ExportTraceServiceRequest` with the official definitions (PyPI `opentelemetry-proto`,
protobuf's C decoder), counts the spans and answers as a collector does. It keeps nothing else:
the figure is the platform's cost of exporting, not a storage back end's.

    python3 bench/otlp_receiver.py --port-file P --counts-file C

It binds 127.0.0.1 on a port the system picks and writes the port to P; on SIGTERM it writes
{"requests", "spans", "refused"} as JSON to C and stops.
"""

import argparse
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

COUNTS = {"requests": 0, "spans": 0, "refused": 0}
LOCK = threading.Lock()
ANSWER = ExportTraceServiceResponse().SerializeToString()


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/v1/traces":
            return self.answer(404, b"")
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception:  # a body that is not an export request
            with LOCK:
                COUNTS["refused"] += 1
            return self.answer(400, b"")
        spans = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        with LOCK:
            COUNTS["requests"] += 1
            COUNTS["spans"] += spans
        self.answer(200, ANSWER)

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--counts-file", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True

    def stop(*_):
        with LOCK:
            json.dump(COUNTS, open(args.counts_file, "w"))
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(args.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
