"""Every label of the pages is translated in both catalogues: none missing, empty or fuzzy,
and the templates use no label a catalogue lacks."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from shared.web import HERE, LANGUAGES, LOCALES, SERVICE_TITLES, translations

LABEL = re.compile(r"""_\((["'])(.+?)\1\)""")


def _catalogue(language: str) -> dict[str, tuple[str, bool]]:
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    return {m.id: (str(m.string), m.fuzzy) for m in catalog if m.id}


def _used() -> set[str]:
    labels = set(SERVICE_TITLES.values())
    for template in (HERE / "templates").glob("*.html"):
        labels |= {text for _, text in LABEL.findall(template.read_text())}
    return labels


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_label_is_translated(language: str) -> None:
    catalogue = _catalogue(language)
    assert _used() <= set(catalogue), sorted(_used() - set(catalogue))
    assert set(catalogue) == set(_catalogue("zh_CN"))
    for msgid, (text, fuzzy) in catalogue.items():
        assert text.strip(), f"{language}: {msgid!r} is empty"
        assert not fuzzy, f"{language}: {msgid!r} is fuzzy"


def test_chinese_is_chinese() -> None:
    assert translations("zh_CN").gettext("Dispatch center") == "派单中心"
    assert translations("en").gettext("Dispatch center") == "Dispatch center"
