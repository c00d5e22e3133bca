"""The poll bench counts only the answer a validator must get: status, ETag, version, body."""

from __future__ import annotations

from bench.delta_polls import Poll

CONDITIONAL = Poll(
    "/v1/risklist/delta?since=42",
    304,
    '"v42"',
    headers={"If-None-Match": '"v42"'},
    expect={"X-Hesgate-List-Version": "42"},
)
PAGE = Poll("/v1/risklist/delta?since=42", 200, '"v42"', body=b"signed empty page")


def test_the_right_304_passes() -> None:
    headers = {"ETag": '"v42"', "X-Hesgate-List-Version": "42"}
    assert CONDITIONAL.problem(304, headers, b"") is None


def test_a_page_where_a_304_was_due_is_refused() -> None:
    headers = {"ETag": '"v42"', "X-Hesgate-List-Version": "42"}
    assert CONDITIONAL.problem(200, headers, b"page") == "HTTP 200, expected 304"


def test_a_304_naming_another_version_is_refused() -> None:
    wrong_tag = {"ETag": '"v41"', "X-Hesgate-List-Version": "42"}
    assert CONDITIONAL.problem(304, wrong_tag, b"") == "ETag '\"v41\"', expected '\"v42\"'"
    no_version = {"ETag": '"v42"'}
    assert CONDITIONAL.problem(304, no_version, b"") == (
        "X-Hesgate-List-Version None, expected '42'"
    )


def test_a_200_must_carry_the_page_verified_before_the_run() -> None:
    assert PAGE.problem(200, {"ETag": '"v42"'}, b"signed empty page") is None
    assert PAGE.problem(200, {"ETag": '"v42"'}, b"another page") is not None
    assert PAGE.problem(200, {}, b"signed empty page") is not None
