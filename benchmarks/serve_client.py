"""A lean load generator for the serve benchmark: asyncio sockets in a process of its own.

Each request is built once (multipart bytes), so a client costs a socket write and a header parse per
request, not an HTTP library's machinery: on 2 shared cores, 16 ``httpx`` client threads took a large share
of the CPU the server was measured on. Keep-alive connections, one request in flight per connection (each
client waits for its answer before sending the next).

    python benchmarks/serve_client.py --port 8000 --clients 16 --requests 400 --k 12 photo1.jpg ...

Prints one JSON line: ``{"rps", "p50", "p95" (ms), "errors", "statuses", "cpu_share"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

BOUNDARY = "imgsearchbenchboundary"


def build_request(host: str, port: int, photo: bytes, params: dict[str, str]) -> bytes:
    """A complete ``POST /search`` with one multipart photo, keep-alive."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /search?{urlencode(params)} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0
    )
    await reader.readexactly(length)
    return status


async def load(host: str, port: int, requests: list[bytes], clients: int, n: int) -> dict:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = iter(range(n))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                t = time.perf_counter()
                writer.write(requests[i % len(requests)])
                await writer.drain()
                status = await _response(reader)
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1
        finally:
            writer.close()

    cpu = time.process_time()
    t = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t
    q = statistics.quantiles(latencies, n=20)
    return {
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) * 1000,
        "p95": q[18] * 1000,
        "errors": sum(c for s, c in statuses.items() if s != 200),
        "statuses": {str(s): c for s, c in sorted(statuses.items())},
        "cpu_share": (time.process_time() - cpu) / wall,  # cores the client itself kept busy
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--param", action="append", default=[], help="query parameter key=value, repeatable")
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    requests = [build_request(args.host, args.port, p.read_bytes(), params) for p in args.photos]
    print(json.dumps(asyncio.run(load(args.host, args.port, requests, args.clients, args.requests))))


if __name__ == "__main__":
    main()
