"""Who is calling: an API key (`vd_...`) or a JWT signed with the one pinned algorithm.

    Authorization: Bearer vd_...      an API key
    X-API-Key: vd_...                 an API key
    Authorization: Bearer eyJ...      a JWT: `sub` names the caller, `groups` (a list) their
                                      groups; `exp` is required, `aud`/`iss` when configured

The JWT's header is checked against the pinned algorithm before anything else, and PyJWT is
given that one algorithm only, so `alg: none` and algorithm swaps (another HMAC, an RS/HS
confusion) are refused twice over. Every refusal is an Unauthorized with a clear message.
"""

from __future__ import annotations

from typing import Any

import jwt

from daemon.agents.api.caller import Caller
from daemon.agents.api.keys import ApiKeyStore, looks_like_key
from daemon.core.config import ApiConfig
from daemon.core.errors import ConfigError
from daemon.core.settings import Settings

# An HMAC secret shorter than the hash's output weakens the signature (RFC 7518 §3.2).
MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class Unauthorized(Exception):
    """No valid credentials: HTTP 401. `challenge` goes into WWW-Authenticate."""

    def __init__(self, message: str, *, invalid: bool = True) -> None:
        super().__init__(message)
        self.challenge = 'Bearer realm="vaultd"' + (', error="invalid_token"' if invalid else "")


class Authenticator:
    def __init__(self, keys: ApiKeyStore, config: ApiConfig, settings: Settings) -> None:
        """Raise ConfigError if the JWT secret is set but too short for the algorithm."""
        self.keys = keys
        self.config = config
        self.secret = settings.get(config.jwt_secret_env)
        needed = MIN_SECRET_BYTES[config.jwt_algorithm]
        if self.secret is not None and len(self.secret.encode("utf-8")) < needed:
            raise ConfigError(
                f"{config.jwt_secret_env} is shorter than {needed} bytes, too short for "
                f"{config.jwt_algorithm}; use e.g. `python -c 'import secrets; "
                f"print(secrets.token_urlsafe({needed}))'`"
            )

    @property
    def jwt_enabled(self) -> bool:
        return self.secret is not None

    def authenticate(self, authorization: str | None, api_key: str | None) -> Caller:
        """Given the Authorization and X-API-Key headers, return the caller.

        Raise Unauthorized saying what is wrong.
        """
        bearer = _bearer(authorization)
        if bearer is not None and api_key is not None:
            raise Unauthorized("send one credential: Authorization or X-API-Key, not both")
        if api_key is not None:
            return self._api_key(api_key.strip())
        if bearer is None:
            raise Unauthorized(
                "missing credentials: send 'Authorization: Bearer <API key or JWT>' "
                "or 'X-API-Key: <API key>'",
                invalid=False,
            )
        if looks_like_key(bearer):
            return self._api_key(bearer)
        return self._jwt(bearer)

    def _api_key(self, key: str) -> Caller:
        found = self.keys.find(key)
        if found is None:
            raise Unauthorized("unknown API key")
        if found.revoked:
            raise Unauthorized(f"API key {found.name!r} was revoked at {found.revoked_at}")
        return Caller(f"apikey:{found.name}", frozenset(found.groups))

    def _jwt(self, token: str) -> Caller:
        if token.count(".") != 2:
            raise Unauthorized("the bearer credential is neither an API key (vd_...) nor a JWT")
        secret = self.secret
        if secret is None:
            raise Unauthorized(
                f"JWTs are not accepted: {self.config.jwt_secret_env} is not set on this server"
            )
        pinned = self.config.jwt_algorithm
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed JWT") from None
        if algorithm != pinned:
            raise Unauthorized(
                f"JWT algorithm {algorithm!r} is not accepted; this server accepts {pinned} only"
            )
        claims = self._decode(token, pinned, secret)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthorized("JWT 'sub' claim must name the caller")
        groups = claims.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthorized("JWT 'groups' claim must be a list of strings")
        return Caller(f"jwt:{subject}", frozenset(groups))

    def _decode(self, token: str, algorithm: str, secret: str) -> dict[str, Any]:
        audience, issuer = self.config.jwt_audience, self.config.jwt_issuer
        required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                options={"require": required, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("JWT expired") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"JWT lacks the required {error.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            expected = f"{audience!r}" if audience else "none"
            raise Unauthorized(f"JWT audience is wrong (this server expects {expected})") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"JWT issuer is wrong (this server expects {issuer!r})") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("JWT is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("JWT signature does not verify") from None
        except jwt.DecodeError:
            raise Unauthorized("malformed JWT") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"JWT refused: {error}") from None


def _bearer(authorization: str | None) -> str | None:
    """Return the credential of an `Authorization: Bearer ...` header, or None if absent.

    Raise Unauthorized for another scheme or an empty credential.
    """
    if authorization is None:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(f"unsupported Authorization scheme {scheme!r}; use Bearer")
    if not credential.strip():
        raise Unauthorized("empty Bearer credential")
    return credential.strip()
