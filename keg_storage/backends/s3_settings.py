"""How S3Storage's boto3 clients are configured: option checks, the botocore ``Config`` (timeouts,
retries, checksums for S3-compatible stores), the transfer manager's settings, the reporter
that logs botocore's retries on ``keg_storage.retry``, and the parser of the service's timestamps.
Kept apart from :mod:`.s3`, which holds the backend and its file objects.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError, display_url, failure_cause, log_resend, log_retry

try:
    import botocore.exceptions
    import botocore.utils
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from dateutil.tz import tzutc  # type: ignore[import-untyped]  # botocore's dependency
except ImportError:  # pragma: no cover - exercised by the package tests without the extra
    pass

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIN_PART_SIZE = 5 * 1024 * 1024
"""S3 refuses parts below 5 MiB, except the last."""

KEY_NOTE = "keg_storage.key"
FAILURE_NOTE = "keg_storage.failure"


class RetryReporter:
    """Logs every retry botocore makes on ``keg_storage.retry``, through botocore's events
    (its own retry handler decides and waits; nothing here retries): ``needs-retry`` notes why
    an attempt failed, and ``before-send`` of the next attempt of that request logs it.

    It holds the storage's label and settings, not the storage: the client outlives no one."""

    def __init__(self, label: str, connect_timeout: float, read_timeout: float) -> None:
        self.label = label
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def register(self, client: S3Client) -> None:
        retries = getattr(client.meta.config, "retries", None) or {}
        total = retries.get("total_max_attempts")
        if total is None and "max_attempts" in retries:
            total = retries["max_attempts"] + 1
        self.attempts: int | None = total
        self.endpoint = display_url(client.meta.endpoint_url)
        events = client.meta.events
        events.register("before-parameter-build.s3", self.note_key)
        events.register_last("needs-retry.s3", self.note_failure)
        events.register("before-send.s3", self.report)

    def resent(self, method: str, key: str, error: BaseException) -> None:
        """Log a direct request (:mod:`.s3_direct`) that got no answer, which goes again
        through the client."""
        cause = failure_cause(
            error, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
        )
        log_resend(self.label, f"{method} {key}", cause, self.endpoint)

    def note_key(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[KEY_NOTE] = params.get("Key", params.get("Prefix"))

    def note_failure(
        self,
        request_dict: dict[str, Any],
        response: Any = None,
        caught_exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        if caught_exception is not None:
            cause = failure_cause(
                caught_exception,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        elif response is not None and response[0].status_code >= 400:
            code = (response[1] or {}).get("Error", {}).get("Code")
            cause = f"HTTP {response[0].status_code}" + (f" {code}" if code else "")
        else:
            return
        request_dict["context"][FAILURE_NOTE] = cause

    def report(self, request: Any, **_: Any) -> None:
        context = request.context
        attempt = context.get("retries", {}).get("attempt", 1)
        if attempt > 1 and FAILURE_NOTE in context:
            key = context.get(KEY_NOTE)
            action = f"{request.method} {key}" if key else request.method
            log_retry(
                self.label, action, context[FAILURE_NOTE], self.endpoint, attempt, self.attempts
            )


def make_clients(
    session: Any, endpoint_url: str | None, config: Any, reporter: RetryReporter
) -> tuple[S3Client, S3Client]:
    """The client of every request (its retries logged), and one that makes a single try per
    call."""
    single_try = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
    client = session.client("s3", endpoint_url=endpoint_url, config=config)
    reporter.register(client)
    client.meta.events.register_last("before-call.s3", send_small_bodies_at_once)
    return client, session.client("s3", endpoint_url=endpoint_url, config=single_try)


EXPECT_CONTINUE_FROM = 1024 * 1024
"""The smallest request body sent only after the service answered ``100 Continue`` (curl's
threshold): a smaller one goes with its headers."""


def send_small_bodies_at_once(params: dict[str, Any], **_: Any) -> None:
    """A ``before-call`` handler: no ``Expect: 100-continue`` on a body below
    :data:`EXPECT_CONTINUE_FROM`. botocore asks for it on every file-like body (a ``put_object``
    of bytes included, which it wraps in one), and then waits for the service's interim answer
    before sending the body: a round trip more per small upload, which saves nothing when the
    body is this small (what a refusal would spare sending)."""
    headers = params["headers"]
    if headers.get("Expect") == "100-continue":
        size = botocore.utils.determine_content_length(params.get("body"))
        if size is not None and size < EXPECT_CONTINUE_FROM:
            del headers["Expect"]


CHECKSUM_OPTIONS = ("request_checksum_calculation", "response_checksum_validation")
"""botocore's checksum settings; ``'when_required'`` by default for ``endpoint_url`` stores."""


def check_options(
    has_sdk: bool, chunk_size: int, max_concurrency: int, addressing_style: str | None
) -> None:
    """Refuse what S3Storage cannot work with, before any client is made."""
    if not has_sdk:
        raise MissingDependencyError("S3Storage", "s3", "boto3")
    if chunk_size < MIN_PART_SIZE:
        raise ValueError(f"chunk_size must be at least {MIN_PART_SIZE} bytes (5 MiB)")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    if addressing_style not in (None, "auto", "path", "virtual"):
        raise ValueError(f"unknown addressing_style {addressing_style!r}")


def set_elsewhere(sdk_session: Any, option: str) -> bool:
    """Whether the environment (``AWS_REQUEST_CHECKSUM_CALCULATION``...) or the profile's config
    file sets the botocore option ``option``: then that setting applies, not our default."""
    if os.environ.get(f"AWS_{option.upper()}"):
        return True
    try:
        return option in sdk_session.get_scoped_config()
    except botocore.exceptions.ProfileNotFound:
        return False


def client_settings(
    set_elsewhere: Callable[[str], bool],
    *,
    endpoint_url: str | None,
    addressing_style: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    max_concurrency: int,
    checksums: Mapping[str, str | None],
) -> Any:
    """The botocore ``Config`` of S3Storage's clients; ``set_elsewhere(option)`` tells whether
    the environment or the profile sets a checksum option."""
    chosen: dict[str, Any] = {
        option: value for option, value in checksums.items() if value is not None
    }
    if endpoint_url:
        # boto3 >= 1.36 sends and checks CRC checksums whenever S3 supports them, which many
        # compatible stores refuse or get wrong (boto3#4392): only where required.
        for option in CHECKSUM_OPTIONS:
            if option not in chosen and not set_elsewhere(option):
                chosen[option] = "when_required"
    style = addressing_style or ("path" if endpoint_url else "auto")
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": style},  # type: ignore[arg-type]
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max(10, 2 * max_concurrency),
        **chosen,
    )


def transfer_settings(multipart_threshold: int, chunk_size: int, max_concurrency: int) -> Any:
    """boto3's ``TransferConfig`` for ``upload``/``put``."""
    config = TransferConfig(
        multipart_threshold=max(multipart_threshold, MIN_PART_SIZE),
        multipart_chunksize=chunk_size,
        max_concurrency=max_concurrency,
        use_threads=True,
    )
    # Bound what the transfer manager reads ahead of the parts in flight (default 10 parts).
    config.max_in_memory_upload_chunks = max_concurrency + 1
    return config


_ISO_8601 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?Z")
"""S3's timestamps in XML bodies (``LastModified`` of a listing): ``2026-12-05T03:08:46.123Z``."""
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
"""HTTP's date form (RFC 9110), S3's ``Last-Modified`` header: ``Sat, 05 Dec 2026 03:08:46 GMT``."""
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def parse_timestamp(value: Any) -> datetime.datetime:
    """A timestamp of the service as botocore's parser gives it (an aware datetime, the same
    moment), for S3Storage's clients: the two forms S3 sends read directly in a microsecond or
    two, anything else by botocore's own parser. botocore reads every one with dateutil's
    general parser, 30-40 us each: a third of the CPU of listing 1,000 keys, and some 5% of a
    small GET or HEAD. The zone is dateutil's ``tzutc()``, as botocore gives it (or
    ``tzlocal()`` on a machine whose zone is UTC: the same moment)."""
    fields = _timestamp_fields(value) if isinstance(value, str) else None
    if fields is not None:
        with contextlib.suppress(ValueError):  # a day the month lacks: botocore says so
            return datetime.datetime(*fields, tzinfo=tzutc())
    parsed: datetime.datetime = botocore.utils.parse_timestamp(value)
    return parsed


def _timestamp_fields(value: str) -> tuple[int, int, int, int, int, int, int] | None:
    """Year, month, day, hour, minute, second and microsecond of a timestamp in one of S3's
    two forms, else None."""
    if iso := _ISO_8601.fullmatch(value):
        year, month, day, hour, minute, second = map(int, iso.group(1, 2, 3, 4, 5, 6))
        microsecond = int(iso[7].ljust(6, "0")) if iso[7] else 0
        return year, month, day, hour, minute, second, microsecond
    if (http := _HTTP_DATE.fullmatch(value)) and http[2] in _MONTHS:
        hour, minute, second = map(int, http.group(4, 5, 6))
        return int(http[3]), _MONTHS[http[2]], int(http[1]), hour, minute, second, 0
    return None


def use_fast_timestamps(sdk_session: Any) -> None:
    """Have the clients that ``sdk_session`` (a botocore session, this storage's own) makes
    from now on parse timestamps with :func:`parse_timestamp`, through botocore's documented
    parser defaults (what the AWS CLI uses to keep timestamps as text)."""
    factory = sdk_session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
