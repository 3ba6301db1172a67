"""Quoting values for the places they go: SQL literals and ~/.pgpass fields."""


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
