"""Conditional writes on S3 (PUT with If-None-Match / If-Match), which pyarrow's S3 client cannot
send: the one step the store's lock needs to be a real mutual exclusion on object storage.

A request signed with AWS Signature V4 from the standard library, with the endpoint, region and
keys of the environment (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). `available()` is False when the keys are not in the
environment (a profile or an instance role): the lock then falls back to its lease alone. Nothing
here logs or raises the keys or the signature.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote

from tasks.store.location import ObjectPath

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    status: int
    etag: str | None
    body: bytes


def available() -> bool:
    """Whether the environment holds the keys to sign with."""
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))


def _endpoint(region: str) -> str:
    found = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not found:
        return f"https://s3.{region}.amazonaws.com"
    return found.rstrip("/") if "://" in found else f"https://{found.rstrip('/')}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(method: str, obj: ObjectPath, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    """One signed request on an object (path-style URL); HTTP errors come back as a Reply."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = _endpoint(region)
    path = "/" + quote(obj.key, safe="/-_.~")
    now = datetime.datetime.now(datetime.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    digest = hashlib.sha256(body).hexdigest()
    signed = {
        "host": endpoint.split("://", 1)[1],
        "x-amz-content-sha256": digest,
        "x-amz-date": stamp,
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    token = os.environ.get("AWS_SESSION_TOKEN")
    if token:
        signed["x-amz-security-token"] = token
    names = sorted(signed)
    canonical = "\n".join(
        [method, path, "", *(f"{k}:{signed[k]}" for k in names), "", ";".join(names), digest]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    signed.pop("host")
    req = urllib.request.Request(endpoint + path, data=body or None, method=method, headers=signed)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as reply:
            return Reply(reply.status, reply.headers.get("ETag"), reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, None, exc.read())


def create(obj: ObjectPath, body: bytes) -> str | None:
    """PUT only if the object does not exist (If-None-Match: *): its ETag, or None if it exists."""
    return _put(obj, body, {"If-None-Match": "*"})


def replace(obj: ObjectPath, body: bytes, etag: str) -> str | None:
    """PUT only if the object is still the version `etag` (If-Match): the new ETag, or None."""
    return _put(obj, body, {"If-Match": etag})


def read(obj: ObjectPath) -> tuple[bytes, str] | None:
    """The object's bytes and ETag, or None when it does not exist."""
    reply = request("GET", obj)
    if reply.status == 404:
        return None
    _check(reply, obj)
    return reply.body, reply.etag or ""


def _put(obj: ObjectPath, body: bytes, condition: dict[str, str]) -> str | None:
    reply = request("PUT", obj, body, condition)
    if reply.status in (409, 412):  # 409: a conditional write racing another one (AWS)
        return None
    _check(reply, obj)
    return reply.etag


def _check(reply: Reply, obj: ObjectPath) -> None:
    if reply.status >= 300:
        raise OSError(f"S3 answered {reply.status} for {obj}: {reply.body[:300].decode(errors='replace')}")
