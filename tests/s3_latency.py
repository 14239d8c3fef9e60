"""A local S3 server for tests and benchmarks: moto in server mode on 127.0.0.1, behind a small TCP proxy that
logs every HTTP request (method, path, Range header) and can delay each one, as a distant object store would.

The proxy is the server's request log: pyarrow's S3 client has no request counter, so what it asked for is
counted where it arrives. Fixtures are uploaded with boto3 straight to moto, so that they do not count in the
proxy's log. moto keeps its buckets per process: give each test its own bucket.

    with LocalS3(delay=0.02) as s3:
        s3.upload_dir("/data/train", "bucket", "train")
        data = open_dataset(f"s3://bucket/train", ...)    # with s3.environ() applied, or s3.filesystem()
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"


@dataclass(frozen=True)
class Request:
    """One HTTP request as it reached the server."""

    method: str
    path: str
    range: str | None
    time: float  # when it arrived (``time.time()``)


class LatencyProxy:
    """A TCP proxy to ``upstream`` that logs each HTTP request and forwards it ``delay`` seconds late (the
    responses flow back untouched). HTTP/1.1 keep-alive is followed: each request's headers and body are framed by
    Content-Length."""

    def __init__(self, upstream: tuple[str, int], delay: float = 0.0):
        self.upstream = upstream
        self.delay = delay
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name="s3-proxy", daemon=True).start()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str) -> int:
        with self._lock:
            return sum(r.method == method for r in self.requests)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._forward_requests, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()

    def _forward_requests(self, client: socket.socket, server: socket.socket) -> None:
        pending = b""
        try:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = client.recv(1 << 16)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                with self._lock:
                    self.requests.append(Request(method, path.split("?")[0], headers.get("range"), time.time()))
                if self.delay:
                    time.sleep(self.delay)
                server.sendall(head + b"\r\n\r\n")
                if headers.get("transfer-encoding", "").lower() == "chunked":  # not framed here: pass through
                    server.sendall(pending)
                    _pump(client, server)
                    return
                remaining = int(headers.get("content-length", "0") or 0)
                while remaining > 0:
                    piece = pending[:remaining] if pending else client.recv(min(remaining, 1 << 20))
                    if not piece:
                        return
                    pending = pending[len(piece):]
                    server.sendall(piece)
                    remaining -= len(piece)
        except OSError:
            pass
        finally:
            _close(client, server)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until it closes: through a pipe with ``splice`` where the platform has it
    (the bytes never enter this process: half the proxy's CPU time per byte), else through a buffer."""
    try:
        if hasattr(os, "splice"):
            _splice(source, sink)
        else:
            buffer = bytearray(1 << 20)
            view = memoryview(buffer)
            while n := source.recv_into(buffer):
                sink.sendall(view[:n])
    except OSError:
        pass
    finally:
        _close(source, sink)


def _splice(source: socket.socket, sink: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)  # 1 MiB, not 64 KiB, per splice
    except OSError:
        pass
    try:
        while n := os.splice(source.fileno(), write_end, 1 << 20):
            while n:
                n -= os.splice(read_end, sink.fileno(), n)
    finally:
        os.close(read_end)
        os.close(write_end)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the moto server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the moto server did not listen on port {port} within {timeout} s")


class LocalS3:
    """moto's S3 server on a free port of 127.0.0.1 with a ``LatencyProxy`` in front (``port``: the proxy's;
    ``moto_port``: moto itself, for uploads and for measuring moto alone)."""

    def __init__(self, delay: float = 0.0, process: bool = False):
        self._server = self._process = None
        if process:  # its own interpreter: moto's Python does not share a GIL with the proxy (benchmarks)
            self.moto_port = _free_port()
            self._process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                              str(self.moto_port)], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            _wait_for_port(self.moto_port, self._process)
        else:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            self.moto_port = self._server.get_host_and_port()[1]
        self.proxy = LatencyProxy(("127.0.0.1", self.moto_port), delay)
        self.port = self.proxy.port

    def __enter__(self) -> LocalS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.proxy.close()
        if self._server is not None:
            self._server.stop()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        """A boto3 client straight to moto (uploads bypass the proxy and its log)."""
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.moto_port}", aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def filesystem(self, through_proxy: bool = True):
        """A pyarrow S3 filesystem on this server (through the proxy, or straight to moto)."""
        import pyarrow.fs as pafs

        port = self.port if through_proxy else self.moto_port
        return pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key=ACCESS_KEY,
                                 secret_key=SECRET_KEY, region=REGION)

    def environ(self) -> dict[str, str]:
        """The environment that points ``s3://`` URIs at this server (through the proxy)."""
        return {"AWS_ENDPOINT_URL": f"http://{self.endpoint}", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    @contextmanager
    def environment(self) -> Iterator[None]:
        """``environ()`` applied to this process for the block."""
        saved = {k: os.environ.get(k) for k in self.environ()}
        os.environ.update(self.environ())
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def upload_dir(self, directory: str, bucket: str, prefix: str) -> list[str]:
        """Upload every file under ``directory`` to ``bucket/prefix/...`` (creating the bucket); the keys."""
        client = self.client()
        if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
            client.create_bucket(Bucket=bucket)
        keys = []
        for root, _, names in os.walk(directory):
            for name in sorted(names):
                path = os.path.join(root, name)
                key = f"{prefix}/{os.path.relpath(path, directory)}".replace(os.sep, "/")
                with open(path, "rb") as stream:
                    client.put_object(Bucket=bucket, Key=key, Body=stream.read())
                keys.append(key)
        return sorted(keys)
