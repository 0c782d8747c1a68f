"""A GET or PUT of one object as a single signed HTTP request, without botocore's request
pipeline: the short path for the small objects every image costs (the image itself, a
one-image job's results.jsonl and manifest.json).

botocore spends about 1.4 ms of CPU on one GetObject or PutObject against a loopback
server (its event hooks, request serialisation, response parsing down to the timestamps),
on the same cores as the model. Here a request costs what SigV4 signing (botocore's own
signer, with the client's credentials, refreshed as they expire) and one pooled urllib3
request cost. Failures become botocore's own exceptions (``ClientError`` with the S3
error code and HTTP status, ``ConnectionError`` for the network), so ``ObjectStore``
classifies and retries them as it does boto3's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from botocore.credentials import Credentials

_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


class TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ObjectRequests:
    """Signed single-request GET and PUT against a path-style endpoint (MinIO, any
    self-hosted S3), with the boto3 client's credentials, region and timeouts."""

    def __init__(
        self,
        endpoint_url: str,
        credentials: Credentials,
        region: str,
        timeout: urllib3.Timeout,
        pool_size: int,
        ca_bundle: str,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.credentials = credentials
        self.region = region
        # Retries are ObjectStore's, as with boto3; an https endpoint is verified against
        # the same CAs as boto3's requests.
        self.pool = urllib3.PoolManager(
            maxsize=pool_size,
            retries=False,
            timeout=timeout,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
        )

    def _url(self, bucket: str, key: str) -> str:
        return f"{self.endpoint_url}/{bucket}/{quote(key, safe='/~')}"

    def _signed(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> AWSRequest:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        # Frozen per request: refreshable credentials (a role's) renew as they expire.
        frozen = self.credentials.get_frozen_credentials()
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        return request

    def _send(
        self, operation: str, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        request = self._signed(method, url, body, headers)
        try:
            response = self.pool.request(
                method,
                url,
                body=body or None,
                headers=dict(request.headers.items()),
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as error:
            raise BotoConnectionError(error=error) from error
        if response.status >= 300:
            raise _client_error(operation, response)
        return response

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ``TooLarge`` (body unread) past ``max_bytes``."""
        response = self._send("GetObject", "GET", self._url(bucket, key), b"", {})
        size = int(response.headers.get("Content-Length", -1))
        if max_bytes is not None and size > max_bytes:
            # Not read, so the connection cannot carry another request: closed, not pooled.
            response.close()
            response.release_conn()
            raise TooLarge(size)
        try:
            return response.read()  # a body cut short raises: its length is enforced
        except urllib3.exceptions.HTTPError as error:
            response.close()
            raise BotoConnectionError(error=error) from error
        finally:
            response.release_conn()

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
        response = self._send("PutObject", "PUT", self._url(bucket, key), data, headers)
        response.drain_conn()
        response.release_conn()


def _client_error(operation: str, response: urllib3.BaseHTTPResponse) -> ClientError:
    """The S3 error a response carries, as boto3 would raise it."""
    try:
        body = response.read()
    except urllib3.exceptions.HTTPError:
        body = b""
    finally:
        response.release_conn()
    code = _ERROR_CODE.search(body)
    message = _ERROR_MESSAGE.search(body)
    error = {
        "Code": code.group(1).decode() if code else str(response.status),
        "Message": message.group(1).decode() if message else response.reason or "",
    }
    parsed: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": response.status}}
    return ClientError(parsed, operation)
