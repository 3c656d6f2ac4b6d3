"""Internal links (CONTRACT §5): links that point at the application's link view
(``LinkViewMixin``) instead of the service, carrying a signed token (HS512 JWT) of what they
allow. :class:`InternalLinksStorageBackend` is the base of the backends without links of their
own (LocalFS, SFTP, memory). Importable from :mod:`keg_storage.backends.base` too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import arrow
import jwt

from ..errors import (
    ExpiredLinkTokenError,
    LinkTokenError,
    MalformedLinkTokenError,
    UnsupportedOperationError,
    describe_backend,
)
from ..paths import RemotePath, directory_prefix
from ..secrets import Secret, hold, scrubbed
from .base import (
    Expiry,
    ShareLinkOperation,
    StorageBackend,
    check_link_header_values,
    resolve_expiry,
)
from .conditions import Capabilities

__all__ = ["InternalLinkTokenData", "InternalLinksStorageBackend", "SecretKey"]

SecretKey = str | bytes | Sequence[str | bytes]


class InternalLinkTokenData(NamedTuple):
    """What an internal link token allows: the key, the operations and, signed with them, the
    file name to serve a download as, its content type, whether an upload may replace an
    existing file (``overwrite``), and the scope (``'tenant/'``) of the
    :meth:`~keg_storage.backends.base.StorageBackend.scoped` view that signed it, ``''`` for
    the backend itself.

    In a token ``path`` is relative to ``scope``; what
    :meth:`InternalLinksStorageBackend.deserialize_link_token` returns has ``path`` relative to
    the backend that verified it (the scope joined in front), so it never leaves the scope."""

    path: str
    operations: ShareLinkOperation
    output_path: str | None = None
    content_type: str | None = None
    overwrite: bool = True
    scope: str = ""

    def serialize(self) -> dict[str, Any]:
        """The token's claims: ``key``, ``op`` and, when set, ``output_path``, ``content_type``,
        ``overwrite`` only when False (tokens made before it existed mean True) and ``scope``
        only when not empty (so the backend's own tokens are what they were)."""
        claims: dict[str, Any] = {"key": self.path, "op": str(self.operations)}
        if self.output_path is not None:
            claims["output_path"] = self.output_path
        if self.content_type is not None:
            claims["content_type"] = self.content_type
        if not self.overwrite:
            claims["overwrite"] = False
        if self.scope:
            claims["scope"] = self.scope
        return claims

    @classmethod
    def deserialize(cls, data: Mapping[str, Any]) -> InternalLinkTokenData:
        """The data of verified token claims (the inverse of :meth:`serialize`).

        Claims of the wrong type (``key`` and ``op`` must be strings, ``output_path`` and
        ``content_type`` strings without control characters when present, ``overwrite`` a
        boolean when present, ``scope`` a string when present) raise
        :class:`MalformedLinkTokenError`: the link view answers 400, never 500."""
        for claim in ("key", "op"):
            if not isinstance(data.get(claim), str):
                raise MalformedLinkTokenError(f"link token claim {claim!r} must be a string")
        overwrite = data.get("overwrite", True)
        if not isinstance(overwrite, bool):
            raise MalformedLinkTokenError("link token claim 'overwrite' must be a boolean")
        scope = data.get("scope", "")
        if not isinstance(scope, str):
            raise MalformedLinkTokenError("link token claim 'scope' must be a string")
        output_path, content_type = data.get("output_path"), data.get("content_type")
        try:
            check_link_header_values(output_path, content_type)
        except ValueError as exc:
            raise MalformedLinkTokenError(f"link token claims are invalid: {exc}") from exc
        return cls(
            path=data["key"],
            operations=ShareLinkOperation.as_operation(data["op"]),
            output_path=output_path,
            content_type=content_type,
            overwrite=overwrite,
            scope=scope,
        )

    @property
    def allow_download(self) -> bool:
        """Whether the token allows ``download``."""
        return ShareLinkOperation.download in self.operations

    @property
    def allow_upload(self) -> bool:
        """Whether the token allows ``upload``."""
        return ShareLinkOperation.upload in self.operations

    @property
    def allow_remove(self) -> bool:
        """Whether the token allows ``remove``."""
        return ShareLinkOperation.remove in self.operations


def _secret_bytes(secret_key: SecretKey) -> list[bytes]:
    """The one or more secrets of a ``secret_key`` setting, as bytes."""
    secrets = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
    return [secret.encode() if isinstance(secret, str) else bytes(secret) for secret in secrets]


class InternalLinksStorageBackend(StorageBackend):
    """A backend whose links point at the application (``LinkViewMixin``) instead of the service.

    Links carry an HS512 JWT (PyJWT) whose key is derived from ``secret_key`` and the backend's
    name, so a token made for one backend never works on another. ``secret_key`` may be a str,
    bytes, or a list of them: the first signs, all verify (key rotation).
    """

    capabilities = Capabilities(internal_links=True, multi_operation_links=True)
    token_algorithm = "HS512"

    def __init__(
        self,
        *,
        linked_endpoint: str | None,
        secret_key: SecretKey | Secret[SecretKey] | None,
        name: str,
    ) -> None:
        held: Secret[SecretKey] | None = hold(secret_key)
        del secret_key  # from here on no frame holds it in plain form
        super().__init__(name)
        self.linked_endpoint = linked_endpoint
        self._token_keys = self._derive_token_keys(held)

    def _derive_token_keys(self, secret_key: Secret[SecretKey] | None) -> list[Secret[bytes]]:
        """The signing keys, each a :class:`Secret` (revealed only inside the jwt calls)."""
        if secret_key is None:
            return []
        raws = [Secret(raw) for raw in _secret_bytes(secret_key.reveal())]
        if not all(raws):
            raise ValueError(f"{self!r}: secret_key must not be empty")
        prefix = f"{self.name}signer".encode()
        return [Secret(hashlib.sha512(prefix + raw.reveal()).digest()) for raw in raws]

    def _require_token_keys(self) -> list[Secret[bytes]]:
        if not self._token_keys:
            raise ValueError(f"{self!r} must be configured with secret_key to use links")
        return self._token_keys

    def get_token_signing_key(self) -> bytes:
        """The HS512 key new tokens are signed with (the first of ``secret_key``'s); override
        to sign with a key of your own, which then also verifies tokens."""
        return self._require_token_keys()[0].reveal()

    def _signing_key(self) -> Secret[bytes]:
        """The signing key, never held in plain form: an override of
        :meth:`get_token_signing_key` (keg-storage 0.5's hook) when the class has one, else the
        first derived key."""
        if type(self).get_token_signing_key is InternalLinksStorageBackend.get_token_signing_key:
            return self._require_token_keys()[0]
        return Secret(self.get_token_signing_key())

    def create_link_token(
        self,
        *,
        path: RemotePath,
        operation: ShareLinkOperation | str,
        expire: Expiry,
        output_path: str | None = None,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> str:
        """A signed token allowing ``operation`` on ``path`` until ``expire``; with
        ``overwrite=False`` its upload never replaces an existing file."""
        key = self._file_key(path)
        parsed = ShareLinkOperation.as_operation(operation)
        check_link_header_values(output_path, content_type)
        self._check_link_overwrite(key, parsed, overwrite)
        return self._sign_token(
            key, parsed, resolve_expiry(expire), output_path, content_type, overwrite
        )

    def _check_link_overwrite(
        self, key: str, operation: ShareLinkOperation, overwrite: bool
    ) -> None:
        """``overwrite=False`` asks for a create-only upload link: refused where it means
        nothing (no upload) or where the backend cannot write create-only."""
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
        if overwrite:
            return
        if ShareLinkOperation.upload not in operation:
            raise ValueError("overwrite=False applies to links that allow 'upload'")
        if not self.capabilities.conditional_create:
            raise UnsupportedOperationError(
                "create-only upload links (overwrite=False) are not supported",
                backend=self,
                path=key,
            )

    def _sign_token(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        overwrite: bool = True,
        scope: str = "",
    ) -> str:
        """The token for arguments already validated (by ``create_link_token`` or ``link_to``);
        ``key`` is relative to ``scope``, the prefix of the scoped view that signs it."""
        signing_key = self._signing_key()
        data = InternalLinkTokenData(key, operation, output_path, content_type, overwrite, scope)
        claims = data.serialize()
        claims["iat"] = int(arrow.utcnow().timestamp())
        claims["exp"] = math.ceil(expires_at.timestamp())
        with scrubbed():
            return jwt.encode(claims, signing_key.reveal(), algorithm=self.token_algorithm)

    def deserialize_link_token(self, token: str | bytes) -> InternalLinkTokenData:
        """Verify a token and return what it allows.

        Raises :class:`ExpiredLinkTokenError` for an expired token, :class:`MalformedLinkTokenError`
        for something that is not a JWT, and :class:`LinkTokenError` for any other failure.
        """
        keys = [self._signing_key(), *self._token_keys[1:]]
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                with scrubbed():  # jwt's frames hold the revealed key
                    claims = jwt.decode(
                        token,
                        key.reveal(),
                        algorithms=[self.token_algorithm],
                        options={"require": ["exp", "key", "op"], "verify_iat": False},
                    )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as exc:
                raise ExpiredLinkTokenError("link token has expired", backend=self) from exc
            except jwt.InvalidAlgorithmError as exc:
                raise LinkTokenError("link token uses a refused algorithm", backend=self) from exc
            except jwt.DecodeError as exc:
                raise MalformedLinkTokenError("link token is malformed", backend=self) from exc
            except jwt.InvalidTokenError as exc:
                raise LinkTokenError(f"link token is invalid: {exc}", backend=self) from exc
        if claims is None:
            raise LinkTokenError("link token signature is invalid", backend=self)
        try:
            return self._confined(InternalLinkTokenData.deserialize(claims))
        except MalformedLinkTokenError as exc:
            raise MalformedLinkTokenError(str(exc), backend=self) from exc
        except (ValueError, TypeError) as exc:  # InvalidPathError is a ValueError
            raise LinkTokenError(f"link token claims are invalid: {exc}", backend=self) from exc

    def _confined(self, data: InternalLinkTokenData) -> InternalLinkTokenData:
        """The verified ``data`` with its path joined to its scope: both checked by the path
        rules (no ``..``, no control character, no leading ``/``; the scope must be written as
        :meth:`scoped` writes it), so the path never leaves the scope that signed the token."""
        key = self._file_key(data.path)
        if not data.scope:
            return data._replace(path=key)
        scope = directory_prefix(data.scope, self)
        if scope != data.scope:
            raise LinkTokenError(f"link token scope {data.scope!r} is not a scope", backend=self)
        return data._replace(path=self._file_key(scope + key))

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        overwrite: bool = True,
        **options: Any,
    ) -> str:
        """A link to the app's link view; ``overwrite=False`` signs a create-only upload."""
        return self._internal_link(
            "", key, operation, expires_at, output_path, content_type, overwrite, options
        )

    def _internal_link(
        self,
        scope: str,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        overwrite: bool,
        options: dict[str, Any],
    ) -> str:
        """A link to the app's link view for ``key`` inside ``scope`` (the prefix of the scoped
        view that signs it, ``''`` for the backend itself); ``options`` go to ``url_for``."""
        self._check_link_overwrite(key, operation, overwrite)
        try:
            import flask
        except ImportError as exc:
            raise UnsupportedOperationError(
                'internal links are served by a Flask app: pip install "keg-storage[flask]", '
                "or override link_to",
                backend=self,
                path=key,
            ) from exc
        if not self.linked_endpoint:
            raise ValueError(f"{self!r} must be configured with linked_endpoint to use links")
        token = self._sign_token(
            key, operation, expires_at, output_path, content_type, overwrite, scope
        )
        try:
            return flask.url_for(self.linked_endpoint, token=token, _external=True, **options)
        except RuntimeError as exc:  # outside a request and without SERVER_NAME
            raise ValueError(
                "links outside a request need the app's SERVER_NAME (and PREFERRED_URL_SCHEME) "
                f"configured (backend {describe_backend(self)}, path {key!r})"
            ) from exc
