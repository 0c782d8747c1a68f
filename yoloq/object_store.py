"""Object storage (S3, MinIO, any S3-compatible server) behind one small class."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.session
import urllib3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.httpsession import get_cert_path

from yoloq.s3_requests import ObjectRequests, TooLarge

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from yoloq.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId"}
)
_THROTTLED_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)
# Network failures worth another try: refused or dropped connections, timeouts, bodies
# cut short. Not bad parameters or missing credentials, which fail the same way again.
_TRANSIENT_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError)


class ObjectNotFound(Exception):
    """The bucket or key does not exist."""


class ObjectAccessDenied(Exception):
    """The credentials may not read (or write) the object; retrying will not help."""


class ObjectTooLarge(Exception):
    """The object is larger than the caller accepts; its body was not read."""


class StorageUnavailable(Exception):
    """Object storage timed out, refused the connection or answered 5xx on every try."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def _is_missing(error: ClientError) -> bool:
    return _code(error) in _MISSING_CODES


def _is_transient(error: ClientError) -> bool:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status >= 500 or status == 429 or _code(error) in _THROTTLED_CODES


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: workers retrying after one S3 hiccup spread
    out instead of arriving together."""

    attempts: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    def delay_s(self, retry: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**retry))


POOL_CONNECTIONS = 32
"""Connections kept open to object storage: a worker's downloads, a job's part fetches and
its uploads run at once."""
EXPECT_CONTINUE_MIN_BYTES = 2 * 1024 * 1024
"""Bodies this large or larger ask the server first (``Expect: 100-continue``), as the
AWS SDK for Go does; boto3 asks for every PUT."""


def _no_expect_for_small_bodies(request: Any, **_: Any) -> None:
    """Send a small body at once: boto3 sends ``Expect: 100-continue`` with every PutObject
    and UploadPart, so each result part, manifest and upload waited a round trip for the
    server's go-ahead before its body, which a refused request saves only the bytes of.
    The header is not signed, so taking it off changes nothing else."""
    length = request.headers.get("Content-Length")
    if "Expect" in request.headers and length and int(length) < EXPECT_CONTINUE_MIN_BYTES:
        del request.headers["Expect"]


def _too_large(bucket: str, key: str, size: int, limit: int | None) -> ObjectTooLarge:
    return ObjectTooLarge(f"s3://{bucket}/{key} is {size} bytes; the limit is {limit}")


@functools.cache
def _sessions() -> tuple[boto3.session.Session, botocore.session.Session]:
    """One boto3 session per process, as ``boto3.client`` keeps, with the botocore session
    under it (for its config): a new one loads the service models again, about 100 ms for
    every store made."""
    core = botocore.session.get_session()
    return boto3.session.Session(botocore_session=core), core


class ObjectStore:
    """Reads and writes whole objects. The boto3 client is thread-safe, so one is shared.

    Every call is tried up to ``retry.attempts`` times on timeouts, connection errors,
    throttling and 5xx; then it raises StorageUnavailable. A missing object raises
    ObjectNotFound and a refusal ObjectAccessDenied at once: those do not get better.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # Retries are ours (see _call), so they are counted once and also cover
            # reading the body.
            retries={"mode": "standard", "total_max_attempts": 1},
            # Path-style addressing: MinIO and most self-hosted servers have no
            # per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint_url else {},
            max_pool_connections=POOL_CONNECTIONS,
        )
        self.endpoint_url = endpoint_url
        self.retry = retry or RetryPolicy()
        session, core = _sessions()
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.client.meta.events.register("before-send.s3", _no_expect_for_small_bodies)
        credentials = session.get_credentials()
        # Small GETs and PUTs skip botocore's pipeline where the endpoint is path-style
        # (yoloq/s3_requests.py); on AWS itself, and without credentials, boto3 does all.
        self.requests = (
            ObjectRequests(
                endpoint_url,
                credentials,
                self.client.meta.region_name,
                urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
                pool_size=POOL_CONNECTIONS,
                # The CAs boto3 trusts: AWS_CA_BUNDLE or the config file's ca_bundle (a
                # private CA's MinIO), else botocore's bundle.
                ca_bundle=str(core.get_config_variable("ca_bundle") or get_cert_path(True)),
            )
            if endpoint_url and credentials is not None
            else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        return cls(
            settings.s3_endpoint_url,
            RetryPolicy(attempts=settings.s3_max_attempts, backoff_s=settings.s3_backoff_s),
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
        )

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                time.sleep(self.retry.delay_s(attempt - 1))
            try:
                return operation()
            except ClientError as error:
                if _is_missing(error):
                    raise ObjectNotFound(f"{what}: does not exist") from error
                if _code(error) in _DENIED_CODES:
                    raise ObjectAccessDenied(f"{what}: access denied ({_code(error)})") from error
                if not _is_transient(error):
                    raise
                last = error
            except _TRANSIENT_ERRORS as error:
                last = error
            log.info("%s failed (try %d of %d): %s", what, attempt + 1, self.retry.attempts, last)
        raise StorageUnavailable(
            f"{what} failed {self.retry.attempts} times; the last error: {last}"
        ) from last

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        requests = self.requests

        def read() -> bytes:
            if requests is not None:
                try:
                    return requests.get(bucket, key, max_bytes)
                except TooLarge as error:
                    raise _too_large(bucket, key, error.size, max_bytes) from error
            response = self.client.get_object(Bucket=bucket, Key=key)
            size = response["ContentLength"]
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise _too_large(bucket, key, size, max_bytes)
            return response["Body"].read()

        return self._call(f"reading s3://{bucket}/{key}", read)

    def stream(self, bucket: str, key: str, piece_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """An object's body a piece at a time (retried only until it starts)."""
        response = self._call(
            f"reading s3://{bucket}/{key}", lambda: self.client.get_object(Bucket=bucket, Key=key)
        )
        return iter(response["Body"].iter_chunks(piece_bytes))

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        requests = self.requests if len(data) < EXPECT_CONTINUE_MIN_BYTES else None

        def write() -> None:
            if requests is not None:
                requests.put(bucket, key, data, content_type)
            else:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

        self._call(f"writing s3://{bucket}/{key}", write)

    def put_new(self, bucket: str, key: str, data: bytes) -> bool:
        """Write ``key`` only if nothing is there (a conditional PUT, ``If-None-Match: *``):
        False if it exists. How two writers agree on who took a name."""
        try:
            self._call(
                f"creating s3://{bucket}/{key}",
                lambda: self.client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*"),
            )
        except ClientError as error:
            if _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        """A file of any size, in parts when it is large."""
        self._call(
            f"uploading {path} to s3://{bucket}/{key}",
            lambda: self.client.upload_file(path, bucket, key),
        )

    def list_prefixes(self, bucket: str, prefix: str = "") -> list[str]:
        """The "folders" right under ``prefix``: the common prefixes up to the next '/'."""
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        try:
            for page in pages:
                found.extend(entry["Prefix"] for entry in page.get("CommonPrefixes", []))
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"bucket {bucket!r} does not exist") from error
            raise
        return found

    def get_if_exists(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.get(bucket, key)
        except ObjectNotFound:
            return None

    def list_keys(self, bucket: str, prefix: str, suffixes: frozenset[str], most: int) -> list[str]:
        """Keys under ``prefix`` ending in one of ``suffixes`` (any case), in key order, at
        most ``most`` of them."""
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.lower().endswith(tuple(suffixes)):
                        found.append(key)
                        if len(found) >= most:
                            return found
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"bucket {bucket!r} does not exist") from error
            raise
        return found

    def list_page(
        self, bucket: str, prefix: str, start_after: str, most: int
    ) -> tuple[list[str], bool]:
        """One page of keys under ``prefix`` after ``start_after``, in key order (at most
        ``most``, S3 gives 1,000 at most), and whether more follow."""

        def list_once() -> tuple[list[str], bool]:
            most_keys = min(most, 1000)
            if start_after:
                page = self.client.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, MaxKeys=most_keys, StartAfter=start_after
                )
            else:
                page = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=most_keys)
            keys = [entry["Key"] for entry in page.get("Contents", [])]
            return keys, bool(page.get("IsTruncated"))

        try:
            return self._call(f"listing s3://{bucket}/{prefix}", list_once)
        except ObjectNotFound as error:
            raise ObjectNotFound(f"bucket {bucket!r} does not exist") from error

    def get_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        """Bytes ``start`` .. ``start + length - 1`` (fewer at the end of the object, none
        past it)."""

        def read() -> bytes:
            try:
                response = self.client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )
            except ClientError as error:
                if _code(error) == "InvalidRange":
                    return b""
                raise
            return response["Body"].read()

        return self._call(f"reading s3://{bucket}/{key} from byte {start}", read)

    def size(self, bucket: str, key: str) -> int:
        return self._call(
            f"looking at s3://{bucket}/{key}",
            lambda: self.client.head_object(Bucket=bucket, Key=key)["ContentLength"],
        )

    def delete(self, bucket: str, key: str) -> None:
        self._call(
            f"deleting s3://{bucket}/{key}",
            lambda: self.client.delete_object(Bucket=bucket, Key=key),
        )

    def start_multipart(self, bucket: str, key: str, content_type: str) -> str:
        return self._call(
            f"starting an upload of s3://{bucket}/{key}",
            lambda: self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type
            )["UploadId"],
        )

    def upload_part(self, bucket: str, key: str, upload: str, number: int, data: bytes) -> str:
        """Returns the part's ETag."""
        return self._call(
            f"uploading part {number} of s3://{bucket}/{key}",
            lambda: self.client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
            )["ETag"],
        )

    def copy_part(self, bucket: str, key: str, upload: str, number: int, source_key: str) -> str:
        """Part ``number`` is the whole of ``source_key`` (same bucket), copied inside S3
        (UploadPartCopy); returns its ETag."""
        return self._call(
            f"copying s3://{bucket}/{source_key} into part {number} of s3://{bucket}/{key}",
            lambda: self.client.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": source_key},
            )["CopyPartResult"]["ETag"],
        )

    def complete_multipart(self, bucket: str, key: str, upload: str, etags: list[str]) -> None:
        parts: list[CompletedPartTypeDef] = [
            {"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)
        ]
        self._call(
            f"completing s3://{bucket}/{key}",
            lambda: self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            ),
        )

    def abort_multipart(self, bucket: str, key: str, upload: str) -> None:
        self._call(
            f"aborting the upload of s3://{bucket}/{key}",
            lambda: self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload),
        )

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._call(
                f"checking bucket {bucket!r}", lambda: self.client.head_bucket(Bucket=bucket)
            )
        except ObjectNotFound:
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        if not self.bucket_exists(bucket):
            self.client.create_bucket(Bucket=bucket)
