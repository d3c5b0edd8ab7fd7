"""Test data, one module a kind: intake bodies (``requests``), events as the center sends them
(``events``), scripted order lifecycles for the audit (``audit``), hypothesis strategies of
hostile bytes and JSON (``strategies``)."""
