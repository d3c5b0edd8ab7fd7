"""Which database errors are conditions that pass (retried) and which are about the work."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import is_transient


def _postgres_error(sqlstate: str) -> BaseException:
    return asyncpg.PostgresError.new({"C": sqlstate, "M": "from the test"})


@pytest.mark.parametrize(
    "sqlstate",
    [
        "08000",  # connection exception
        "08006",  # connection failure
        "08P01",  # protocol violation
        "40001",  # serialization failure
        "40P01",  # deadlock
        "53100",  # disk full
        "53200",  # out of memory
        "53300",  # too many connections
        "25006",  # read-only transaction (a standby after failover)
        "57014",  # statement timeout
        "55P03",  # lock timeout
        "57P01",  # admin shutdown
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now (starting up)
        "58030",  # I/O error
        "28P01",  # invalid password (rotated under a running service)
        "42501",  # insufficient privilege (a grant missing from the service's role)
    ],
)
def test_conditions_of_the_database_are_transient(sqlstate: str) -> None:
    assert is_transient(_postgres_error(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "23505",  # unique violation
        "23503",  # foreign key violation
        "22P02",  # invalid text representation
        "22003",  # numeric value out of range
        "22021",  # character not in repertoire (NUL)
        "42703",  # undefined column
        "55000",  # object not in prerequisite state: not 55P03
        "25P02",  # in failed transaction: not 25006
    ],
)
def test_errors_about_the_work_are_not(sqlstate: str) -> None:
    assert not is_transient(_postgres_error(sqlstate))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("database down"),
        TimeoutError(),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.OutdatedSchemaCacheError("cached statement plan is invalid"),
    ],
)
def test_connection_level_errors_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        # what asyncpg raises (SQLSTATE 22000) for a value it cannot send, as an int out of range
        asyncpg.DataError("invalid input for query argument $1"),
        ValueError("bad"),
        KeyError("x"),
        RecursionError(),
    ],
)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not is_transient(error)
