"""Access tokens: minting, every refused token, the signing secret, and the authenticator."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from scribeline.auth import Authenticator, Principal, hash_key, new_api_key
from scribeline.config import Settings
from scribeline.domain import ApiKey
from scribeline.errors import AuthenticationFailed, Forbidden
from scribeline.tokens import (
    SECRET_FILE,
    Claims,
    TokenSecretError,
    load_or_create_secret,
    mint,
    verify,
)

SECRET = "s" * 64
NOW = 1_760_000_000.0


def _mint(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "org_id": 7,
        "key_id": 42,
        "scopes": frozenset({"read"}),
        "ttl_seconds": 600,
        "now": NOW,
    }
    args.update(overrides)
    return mint(SECRET, **args)


def _claims(**overrides: Any) -> dict[str, Any]:
    """A payload like mint's, to sign by hand with something wrong in it."""
    payload: dict[str, Any] = {
        "iss": "scribeline",
        "aud": "scribeline",
        "sub": "42",
        "org": 7,
        "scopes": ["read"],
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
        "jti": "j",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _refused(token: str, now: float = NOW) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        verify(SECRET, token, now=now)
    assert info.value.message == "Authentication failed"  # never says why


def test_round_trip_keeps_every_claim() -> None:
    """A minted token verifies to the organization, key, scopes, restriction and expiry."""
    token = _mint(scopes={"read", "write"}, call_sid="CA1")
    assert verify(SECRET, token, now=NOW + 10) == Claims(
        org_id=7,
        key_id=42,
        scopes=frozenset({"read", "write"}),
        call_sid="CA1",
        campaign_id=None,
        expires_at=(int(NOW) + 600) * 1000,
    )
    assert verify(SECRET, _mint(campaign_id=9), now=NOW).campaign_id == 9
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


def test_tokens_are_unique_and_fit_a_subprotocol() -> None:
    """Two tokens minted at once differ (jti), and use only base64url characters and dots."""
    a, b = _mint(), _mint()
    assert a != b
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert set(a) <= allowed


def test_verify_without_now_uses_the_clock() -> None:
    """Without an explicit time, a fresh token is valid now."""
    token = _mint(now=time.time())
    assert verify(SECRET, token).key_id == 42


def test_expired_token_is_refused() -> None:
    """A token past its exp (beyond the leeway) is refused."""
    token = _mint(ttl_seconds=60)
    verify(SECRET, token, now=NOW + 60)  # within the 5 s leeway
    _refused(token, now=NOW + 66)


def test_not_yet_valid_token_is_refused() -> None:
    """A token whose nbf (or iat) is in the future beyond the leeway is refused."""
    _refused(_mint(now=NOW + 60))
    _refused(jwt.encode(_claims(nbf=int(NOW) + 60), SECRET, algorithm="HS256"))
    _refused(jwt.encode(_claims(iat=int(NOW) + 60), SECRET, algorithm="HS256"))


def test_bad_signature_is_refused() -> None:
    """A token signed with another secret, or with its payload altered, is refused."""
    _refused(mint("o" * 48, org_id=7, key_id=42, scopes={"read"}, ttl_seconds=600, now=NOW))
    header, _, signature = _mint().split(".")
    forged = _b64(_claims(scopes=["admin"]))
    _refused(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused() -> None:
    """An unsigned token (``alg: none``, empty signature) is refused."""
    header = _b64({"alg": "none", "typ": "JWT"})
    _refused(f"{header}.{_b64(_claims())}.")


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused(algorithm: str) -> None:
    """A token signed with the right secret but another algorithm is refused."""
    _refused(jwt.encode(_claims(), SECRET, algorithm=algorithm))


def test_unknown_algorithm_is_refused() -> None:
    """A header naming an algorithm nobody implements is refused."""
    _, payload, signature = _mint().split(".")
    _refused(f"{_b64({'alg': 'XS999', 'typ': 'JWT'})}.{payload}.{signature}")


@pytest.mark.parametrize("aud", ["someone-else", ["scribeline", "other"]])
def test_wrong_audience_is_refused(aud: Any) -> None:
    """A token for another audience (or for several) is refused."""
    _refused(jwt.encode(_claims(aud=aud), SECRET, algorithm="HS256"))


def test_wrong_issuer_is_refused() -> None:
    """A token from another issuer is refused."""
    _refused(jwt.encode(_claims(iss="somebody"), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "sub", "aud", "iss"])
def test_missing_registered_claim_is_refused(claim: str) -> None:
    """A token without one of the required registered claims is refused."""
    _refused(jwt.encode(_claims(**{claim: None}), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"org": None},
        {"org": "7"},
        {"sub": "key"},
        {"scopes": None},
        {"scopes": []},
        {"scopes": "read"},
        {"exp": "tomorrow"},
        {"call_sid": "bad sid!"},
        {"call_sid": "CA1", "campaign_id": 3},
        {"campaign_id": True},
    ],
)
def test_malformed_claims_are_refused(overrides: dict[str, Any]) -> None:
    """A correctly signed token whose claims are not what the server mints is refused."""
    _refused(jwt.encode(_claims(**overrides), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "a.b", "...", "eyJ.eyJ.", "scl_x.y.z"])
def test_garbage_is_refused(garbage: str) -> None:
    """Strings that are not JWTs are refused with the same generic error."""
    _refused(garbage)


def test_mint_refuses_nonsense() -> None:
    """Minting needs a positive lifetime, a scope, and at most one restriction."""
    with pytest.raises(ValueError):
        _mint(ttl_seconds=0)
    with pytest.raises(ValueError):
        _mint(scopes=frozenset())
    with pytest.raises(ValueError):
        _mint(call_sid="CA1", campaign_id=1)


# --------------------------------------------------------------------------- secret


def test_secret_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    """Without a configured secret, one is generated into the data directory with mode 0600."""
    settings = Settings(data_dir=tmp_path / "data")
    first = load_or_create_secret(settings)
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.encode()) >= 32
    assert load_or_create_secret(settings) == first
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE]  # no temporary left


def test_configured_secret_wins(tmp_path: Path) -> None:
    """A configured secret is used as is and nothing is written."""
    settings = Settings(data_dir=tmp_path, token_secret="k" * 32)
    assert load_or_create_secret(settings) == "k" * 32
    assert not (tmp_path / SECRET_FILE).exists()


def test_short_configured_secret_is_refused(tmp_path: Path) -> None:
    """A configured secret under 32 bytes stops start-up with a message naming the setting."""
    with pytest.raises(TokenSecretError, match="SCRIBELINE_TOKEN_SECRET"):
        load_or_create_secret(Settings(data_dir=tmp_path, token_secret="too-short"))


def test_short_stored_secret_is_refused(tmp_path: Path) -> None:
    """A secret file someone filled with a short value is refused, not silently used."""
    (tmp_path / SECRET_FILE).write_text("short\n")
    with pytest.raises(TokenSecretError, match=SECRET_FILE):
        load_or_create_secret(Settings(data_dir=tmp_path))


# --------------------------------------------------------------------------- authenticator


class FakeCatalog:
    """Just the key look-ups the authenticator makes, with call counters."""

    def __init__(self) -> None:
        self.keys: dict[int, ApiKey] = {}
        self.by_hash: dict[bytes, int] = {}
        self.lookups = 0

    def add(self, key_id: int, org_id: int, scopes: set[str]) -> str:
        key, prefix, digest = new_api_key()
        self.keys[key_id] = ApiKey(key_id, org_id, 1, prefix, frozenset(scopes), "", 0, None)
        self.by_hash[digest] = key_id
        return key

    def revoke(self, key_id: int) -> None:
        k = self.keys[key_id]
        self.keys[key_id] = ApiKey(
            k.id, k.org_id, k.user_id, k.prefix, k.scopes, k.name, k.created_at, 1
        )

    async def find_api_key(self, key_hash: bytes) -> ApiKey | None:
        self.lookups += 1
        key_id = self.by_hash.get(key_hash)
        return None if key_id is None else self.keys[key_id]

    async def get_api_key(self, key_id: int) -> ApiKey | None:
        self.lookups += 1
        return self.keys.get(key_id)


def _authenticator(catalog: FakeCatalog, cache_seconds: float = 5.0) -> Authenticator:
    return Authenticator(catalog, SECRET, cache_seconds)  # type: ignore[arg-type]


async def test_authenticator_resolves_a_token_to_a_restricted_principal() -> None:
    """A valid token becomes a principal with its scopes and restriction, not the key's."""
    catalog = FakeCatalog()
    catalog.add(42, 7, {"read", "write"})
    auth = _authenticator(catalog)
    token = _mint(now=time.time(), call_sid="CA1")
    assert await auth.authenticate(token) == Principal(7, frozenset({"read"}), 42, "CA1", None)


async def test_authenticator_mints_at_most_the_keys_scopes() -> None:
    """Minting through the authenticator refuses scopes beyond the key's; admin grants all."""
    catalog = FakeCatalog()
    key = catalog.add(42, 7, {"read"})
    auth = _authenticator(catalog)
    principal = await auth.authenticate(key)
    with pytest.raises(Forbidden):
        auth.mint(principal, scopes=frozenset({"write"}), ttl_seconds=60, now=time.time())
    admin = Principal(7, frozenset({"admin"}), 42)
    token = auth.mint(admin, scopes=frozenset({"read", "write"}), ttl_seconds=60, now=time.time())
    assert verify(SECRET, token).scopes == {"read", "write"}


async def test_revoked_or_mismatched_key_refuses_its_tokens() -> None:
    """A token fails once its key is revoked (after the cache), or if its key or org differ."""
    catalog = FakeCatalog()
    catalog.add(42, 7, {"read"})
    auth = _authenticator(catalog, cache_seconds=0)
    token = _mint(now=time.time())
    await auth.authenticate(token)
    catalog.revoke(42)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(token)
    with pytest.raises(AuthenticationFailed):  # a key that does not exist
        await auth.authenticate(_mint(now=time.time(), key_id=999))
    with pytest.raises(AuthenticationFailed):  # the key belongs to another organization
        await auth.authenticate(_mint(now=time.time(), org_id=8, key_id=42))


async def test_token_scopes_beyond_the_key_are_refused() -> None:
    """A token claiming more than its key holds (a leaked secret, say) is refused."""
    catalog = FakeCatalog()
    catalog.add(42, 7, {"read"})
    auth = _authenticator(catalog)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(_mint(now=time.time(), scopes={"read", "write"}))


async def test_key_lookups_are_cached() -> None:
    """Within the cache time a token's key is looked up once, as an API key's hash is."""
    catalog = FakeCatalog()
    key = catalog.add(42, 7, {"read"})
    auth = _authenticator(catalog)
    token = _mint(now=time.time())
    for _ in range(3):
        await auth.authenticate(token)
        await auth.authenticate(key)
    assert catalog.lookups == 2
    assert catalog.by_hash[hash_key(key)] == 42


async def test_oversized_or_missing_tokens_are_refused_without_lookups() -> None:
    """No token, or one far longer than any minted, fails before touching the catalog."""
    catalog = FakeCatalog()
    auth = _authenticator(catalog)
    for token in (None, "", "e" * 5000, "scl_" + "a" * 300):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(token)
    assert catalog.lookups == 0
