"""Language codes: ISO 639-1/639-3 codes and English names → one canonical code, via pycountry."""

from __future__ import annotations

import functools

import pycountry

from mlkd_cli.errors import DataError

VALID_FORMS = "an ISO 639-1 code (en), an ISO 639-3 code (eng) or an English name (English)"

# Earlier fields win on a clash, so "en" is English (alpha_2), not the En language (name).
_FIELDS = ("alpha_2", "alpha_3", "bibliographic", "name", "common_name", "inverted_name")


@functools.cache
def _index() -> dict[str, str]:
    """Lower-cased code or name → ISO 639-1 code where the language has one, else 639-3."""
    index: dict[str, str] = {}
    for field in _FIELDS:
        for lang in pycountry.languages:
            key = getattr(lang, field, None)
            if key:
                index.setdefault(key.lower(), getattr(lang, "alpha_2", None) or lang.alpha_3)
    return index


def normalize_language(value: str) -> str | None:
    """``"en"``, ``"eng"``, ``"English"`` (any case) → ``"en"``; None for an unknown language."""
    return _index().get(value.strip().lower())


def require_language(value: str, where: str) -> str:
    """The canonical code of ``value``; a DataError naming ``where`` (file:line) if unknown."""
    code = normalize_language(value)
    if code is None:
        raise DataError(f"{where}: unknown language {value!r}; fix: write {VALID_FORMS}")
    return code
