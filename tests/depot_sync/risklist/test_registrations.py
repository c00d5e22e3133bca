from __future__ import annotations

import datetime as dt
import os

import asyncpg
import pytest

from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.risklist.credentials import card_key, hes_key
from depot_sync.risklist.registrations import RegistrationFileError, import_registrations, read_rows
from protocol import tckn
from protocol.risk import Groups

LIST_KEY = bytes(range(32))
TODAY = dt.date(2024, 3, 1)
TCKN = tckn.make("123456789")  # ends in ...950? whatever: checked below

GOOD = f"""card_uid,hes_code,tckn,birth_year,age_group
04:A2:24:B2:C6:1E:80,R7G6-9154-15,{TCKN},1950,
04A224B2C61E81,r7g6915415,{TCKN[-3:]},1950,
,A1B2C3D4E5,246,,under_20
"""


@pytest.fixture
def field_cipher() -> FieldCipher:
    return FieldCipher(os.urandom(32))


async def run(pool: asyncpg.Pool, cipher: FieldCipher, text: str):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn:
        return await import_registrations(conn, cipher, LIST_KEY, text, today=TODAY)


async def test_import_stores_codes_and_cards_encrypted(
    pool: asyncpg.Pool, field_cipher: FieldCipher
) -> None:
    report = await run(pool, field_cipher, GOOD)
    assert report.rejected == []
    assert (report.rows, report.codes_added, report.cards_added) == (3, 2, 2)
    rows = {r["key"]: r for r in await pool.fetch("SELECT * FROM credentials")}
    code = rows[hes_key(LIST_KEY, "R7G6915415")]
    assert code["kind"] == 1
    assert code["registered_last3"] == TCKN[-3:]
    assert code["groups"] == Groups.AGE_65_PLUS
    assert code["ministry_state"] == "unchecked"
    assert b"R7G6915415" not in code["value_enc"]
    key = hes_key(LIST_KEY, "R7G6915415")
    assert field_cipher.open_text(code["value_enc"], context=credential_context(key)) == (
        "R7G6915415"
    )
    card = rows[card_key(LIST_KEY, "04A224B2C61E80")]
    assert card["kind"] == 2
    assert card["hes_key"] == key
    assert rows[hes_key(LIST_KEY, "A1B2C3D4E5")]["groups"] == Groups.UNDER_20
    # Nothing is listed before the Ministry has been asked.
    assert await pool.fetchval("SELECT count(*) FROM list_changes") == 0


async def test_rerunning_changes_nothing(pool: asyncpg.Pool, field_cipher: FieldCipher) -> None:
    await run(pool, field_cipher, GOOD)
    before = await pool.fetch("SELECT key, updated_at, value_enc FROM credentials ORDER BY key")
    again = await run(pool, field_cipher, GOOD)
    after = await pool.fetch("SELECT key, updated_at, value_enc FROM credentials ORDER BY key")
    assert before == after
    assert (again.codes_added, again.codes_updated, again.cards_added, again.cards_updated) == (
        0,
        0,
        0,
        0,
    )
    assert again.unchanged == 3


async def test_changed_registration_updates_only_that_row(
    pool: asyncpg.Pool, field_cipher: FieldCipher
) -> None:
    await run(pool, field_cipher, GOOD)
    moved = GOOD.replace(
        "04A224B2C61E81,r7g6915415," + TCKN[-3:] + ",1950,",
        "04A224B2C61E81,A1B2C3D4E5,246,,under_20",
    )
    report = await run(pool, field_cipher, moved)
    assert report.rejected == []
    assert (report.cards_updated, report.codes_updated, report.unchanged) == (1, 0, 2)
    card = await pool.fetchrow(
        "SELECT hes_key FROM credentials WHERE key = $1", card_key(LIST_KEY, "04A224B2C61E81")
    )
    assert card is not None
    assert card["hes_key"] == hes_key(LIST_KEY, "A1B2C3D4E5")


async def test_each_bad_row_is_reported_and_good_rows_still_import(
    pool: asyncpg.Pool, field_cipher: FieldCipher
) -> None:
    bad_check = TCKN[:10] + str((int(TCKN[10]) + 2) % 10)
    text = (
        "card_uid;hes_code;tckn;birth_year\n"
        f"04A224B2C61E80;R7G6-9154-15;{TCKN};1950\n"  # line 2: good
        f"XYZ;R7G6915415;{TCKN};1950\n"  # 3: bad uid
        f"04A224B2C61E82;R7G6-9154;{TCKN};1950\n"  # 4: short code
        f"04A224B2C61E83;R7G6915415;{bad_check};1950\n"  # 5: check digits
        "04A224B2C61E84;R7G6915415;123;1950\n"  # 6: odd last digit
        f"04A224B2C61E85;R7G6915415;{TCKN};\n"  # 7: no age
        f"04A224B2C61E80;A1B2C3D4E5;{TCKN};1950\n"  # 8: card on line 2 with another code
        f"04A224B2C61E86;R7G6915415;{TCKN};1980\n"  # 9: same code, other age
        f"04A224B2C61E87;R7G6915415;{TCKN};1850\n"  # 10: year out of range
    )
    report = await run(pool, field_cipher, text)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert reasons[3].startswith("card_uid:")
    assert reasons[4].startswith("hes_code:")
    assert "check digits" in reasons[5]
    assert "even digit" in reasons[6]
    assert "birth_year or age_group" in reasons[7]
    assert "line 2" in reasons[8]
    assert "line 2" in reasons[9]
    assert reasons[10].startswith("birth_year:")
    assert report.accepted == 1
    assert await pool.fetchval("SELECT count(*) FROM credentials") == 2
    lines = list(report.lines())
    assert lines[0].startswith("9 rows: 1 accepted, 8 rejected")
    assert all(TCKN not in line for line in lines)


def test_missing_columns_name_what_is_missing() -> None:
    with pytest.raises(RegistrationFileError, match="lacks tckn"):
        read_rows("card_uid,hes_code\n", 2024)
    with pytest.raises(RegistrationFileError, match="unknown columns: name"):
        read_rows("card_uid,hes_code,tckn,name\n", 2024)
