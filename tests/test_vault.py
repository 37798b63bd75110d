"""Credentials at rest: AES-256-GCM bound to user and field, key ids, rotation."""

from __future__ import annotations

import pytest

from byodb.errors import ConfigurationError, DecryptionError
from byodb.vault import KeyRing, Secret, Vault, generate_key_hex

URL = Secret("postgresql://ann:s3cret-pw@db.example.com:5432/app")


def vault(*keys: str) -> Vault:
    return Vault(KeyRing.from_hex(keys[0], ",".join(keys[1:]) or None))


def test_round_trip_and_ciphertext_names_its_key() -> None:
    key = generate_key_hex()
    v = vault(key)
    ciphertext = v.encrypt(URL, user_id="ann", field="database_url")
    assert "s3cret" not in ciphertext
    assert Vault.key_id_of(ciphertext) == v.current_key_id
    assert v.decrypt(ciphertext, user_id="ann", field="database_url") == URL


def test_each_encryption_uses_a_fresh_nonce() -> None:
    v = vault(generate_key_hex())
    assert v.encrypt(URL, user_id="a", field="f") != v.encrypt(URL, user_id="a", field="f")


def test_tampered_ciphertext_does_not_decrypt() -> None:
    v = vault(generate_key_hex())
    ciphertext = v.encrypt(URL, user_id="ann", field="database_url")
    tampered = ciphertext[:-5] + ("A" if ciphertext[-5] != "A" else "B") + ciphertext[-4:]
    with pytest.raises(DecryptionError):
        v.decrypt(tampered, user_id="ann", field="database_url")


def test_ciphertext_copied_to_another_users_row_does_not_decrypt() -> None:
    v = vault(generate_key_hex())
    ciphertext = v.encrypt(URL, user_id="ann", field="database_url")
    with pytest.raises(DecryptionError):
        v.decrypt(ciphertext, user_id="bob", field="database_url")
    with pytest.raises(DecryptionError):
        v.decrypt(ciphertext, user_id="ann", field="other_field")


def test_wrong_key_does_not_decrypt_and_says_so() -> None:
    ciphertext = vault(generate_key_hex()).encrypt(URL, user_id="ann", field="f")
    with pytest.raises(DecryptionError, match="unknown key"):
        vault(generate_key_hex()).decrypt(ciphertext, user_id="ann", field="f")


def test_old_keys_keep_decrypting_after_rotation() -> None:
    old, new = generate_key_hex(), generate_key_hex()
    ciphertext = vault(old).encrypt(URL, user_id="ann", field="f")
    rotated = vault(new, old)
    assert rotated.decrypt(ciphertext, user_id="ann", field="f") == URL
    assert Vault.key_id_of(rotated.encrypt(URL, user_id="ann", field="f")) == \
        rotated.current_key_id != Vault.key_id_of(ciphertext)


def test_secret_is_redacted_everywhere() -> None:
    assert "s3cret" not in repr(URL) and "s3cret" not in str(URL)
    assert "s3cret" not in f"{URL}" and "s3cret" not in repr([URL])
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(URL)


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 32, "00" * 31])
def test_malformed_key_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        KeyRing.from_hex(bad)
