"""A real S3 protocol server on 127.0.0.1 for the tests: moto in server mode with credentials checked, and a small
HTTP proxy in front of it that logs every request and fails the ones it is told to.

Inside ``S3Server.credentials_checked()`` the server checks credentials (moto's IAM authentication) against the
users' ``POLICIES``, as AWS would: ``admin`` may do anything, ``reader`` may list and read the objects under
train/data/, ``getter`` may read objects but list nothing, and any other key is refused with 403
InvalidAccessKeyId. (moto's authentication is a setting of the whole process, and another moto server in it, such as
tests/s3_latency.py's, takes any key: so it is on only inside that block.) Clients go through the proxy
(``S3Server.endpoint``), so a test can count the requests a command made, tell whose key signed each, and inject
the transient errors (503) that retries must survive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "expect"}  # the proxy answered the 100-continue itself; it forwards the whole body at once
# moto authorizes a request by the IAM action AWS names (s3:GetObject for a HeadObject, s3:ListBucket for a
# ListObjectsV2) up to 5.2.5, and by the operation's own name from 5.2.6 on (s3:HeadObject, s3:ListObjectsV2, and
# s3:HeadBucket always): a policy grants both, so the users below are what they would be on AWS with any moto
_MOTO_NAMES = {"s3:GetObject": ["s3:HeadObject"], "s3:ListBucket": ["s3:ListObjectsV2", "s3:ListObjects",
                                                                      "s3:HeadBucket"]}


def _allow(actions: list[str], resource: str = "*") -> dict:
    """An Allow statement of ``actions`` (AWS's names) on ``resource``, in the names every moto checks."""
    return {"Effect": "Allow", "Resource": resource,
            "Action": sorted({*actions, *(name for action in actions for name in _MOTO_NAMES.get(action, []))})}


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# admin: anything. reader: list every bucket, read the objects under train/data/ (a role scoped to a prefix, so
# the HeadObject of the key "train/data" itself is refused, as AWS refuses it). getter: read any object, list
# nothing (so AWS answers 403, not 404, for a missing key: the proxy does that, see FaultProxy.hides_missing)
POLICIES = {
    "admin": _policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    "reader": _policy(_allow(["s3:ListBucket"]), _allow(["s3:GetObject"], "arn:aws:s3:::train/data/*")),
    "getter": _policy(_allow(["s3:GetObject"])),
}
MAY_NOT_LIST = ("getter",)


@dataclass
class Fault:
    """Fail the requests whose method is ``method`` (any if None) and whose path holds ``path`` with ``status``,
    ``times`` times (None: every time)."""

    status: int = 503
    times: int | None = 1
    method: str | None = None
    path: str = ""
    failed: int = 0

    def matches(self, method: str, path: str) -> bool:
        live = self.times is None or self.failed < self.times
        return live and (self.method is None or self.method == method) and self.path in path


@dataclass
class RequestLog:
    """Every request the proxy relayed or failed: (method, path with its query, status, the access key that
    signed it), so a test can tell which process (with which credentials) made a request."""

    entries: list[tuple[str, str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, status: int, key: str) -> None:
        with self.lock:
            self.entries.append((method, path, status, key))

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def count(self, method: str | None = None, path: str = "", key: str | None = None) -> int:
        with self.lock:
            return sum(1 for m, p, _, k in self.entries
                       if (method is None or m == method) and path in p and (key is None or k == key))


_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                  b'<Message>Access Denied</Message></Error>')


def _names_object(path: str) -> bool:
    """True for a path-style request of an object (``/bucket/key``), not of a bucket (``/bucket?list-type=2``)."""
    bucket_and_key = path.split("?", 1)[0].lstrip("/").split("/", 1)
    return len(bucket_and_key) == 2 and bool(bucket_and_key[1])


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _relay(self) -> None:
        proxy: FaultProxy = self.server  # type: ignore[assignment]
        body = self._body()
        signed = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        signer = signed.group(1) if signed else ""
        fault = proxy.fault_for(self.command, self.path)
        if fault is not None:
            # no body: the AWS SDK writes an error's body into the buffer of a ranged GET, and one longer than the
            # range fails as "Failed to flush response stream" instead of being retried; the status says it all
            payload = b""
            self.send_response(fault)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if self.command != "HEAD" else b"")
            proxy.log.add(self.command, self.path, fault, signer)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            status, payload = response.status, response.read()
        finally:
            upstream.close()
        if status == 404 and signer in proxy.hides_missing and _names_object(self.path):
            # AWS answers a missing key with 403 to a caller that may not list the bucket; moto answers 404
            status, payload = 403, _ACCESS_DENIED
        self.send_response(status)
        head = self.command == "HEAD"  # its Content-Length is the object's, with no body
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and (head or name.lower() != "content-length"):
                self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)
        proxy.log.add(self.command, self.path, status, signer)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


class FaultProxy(ThreadingHTTPServer):
    """An HTTP proxy to ``upstream`` (host, port) that logs requests and injects the ``faults`` it holds."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.log = RequestLog()
        self.faults: list[Fault] = []
        self.hides_missing: set[str] = set()  # access keys answered 403 for a missing object, as AWS would
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def fault_for(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.failed += 1
                    return fault.status
        return None

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class S3Server:
    """moto on 127.0.0.1 behind a FaultProxy; ``keys[name]`` are the (access key, secret) of a user."""

    moto: Any
    proxy: FaultProxy
    keys: dict[str, tuple[str, str]]
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        return self.proxy.url

    def env(self, user: str = "admin") -> dict[str, str]:
        """The standard AWS environment of a process that uses this server as ``user``."""
        key, secret = self.keys[user]
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_REGION": self.region, "AWS_EC2_METADATA_DISABLED": "true"}

    def boto3(self, user: str = "admin") -> Any:
        import boto3

        key, secret = self.keys[user]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id=key,
                            aws_secret_access_key=secret)

    def upload_tree(self, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
        """Put ``files`` (name -> bytes) under ``prefix`` of ``bucket`` (created if needed), with boto3."""
        client = self.boto3()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        for name, data in files.items():
            client.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{name}".lstrip("/"), Body=data)

    @contextlib.contextmanager
    def credentials_checked(self) -> Iterator[None]:
        """Every request authenticated and authorized (as AWS does) inside this block only."""
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, requests_before_checks: str) -> None:
        connection = http.client.HTTPConnection(*self.moto.get_host_and_port(), timeout=10)
        try:
            connection.request("POST", "/moto-api/reset-auth", body=requests_before_checks.encode())
            assert connection.getresponse().status == 200
        finally:
            connection.close()

    def stop(self) -> None:
        self.proxy.stop()
        self.moto.stop()


def start_s3_server() -> S3Server:
    """Start moto on a free port of 127.0.0.1, create the users of ``POLICIES``, and start the proxy."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    keys = {}
    for user, policy in POLICIES.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = (created["AccessKeyId"], created["SecretAccessKey"])
    keys["stranger"] = ("AKIANOTAKNOWNKEY0000", "not-a-secret")
    proxy = FaultProxy((host, port))
    proxy.hides_missing.update(keys[user][0] for user in MAY_NOT_LIST)
    return S3Server(moto=moto, proxy=proxy, keys=keys)
