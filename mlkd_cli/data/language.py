"""Language codes: ISO 639-1/639-3 codes and English names → one canonical code, via pycountry."""

from __future__ import annotations

import functools
import re

import pycountry

from mlkd_cli.errors import DataError

UNKNOWN = "unknown"  # the language of speech a model rejects: none it was trained on (`mlkd calibrate-lid`)

VALID_FORMS = (
    "an ISO 639-1 code (en), an ISO 639-3 code (eng) or an English name (English), "
    "optionally with a region or script (en-US, en_us, zh-CN)"
)

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
    """``"en"``, ``"eng"``, ``"English"``, ``"en-US"`` (any case) → ``"en"``; None if unknown.

    A locale tag as corpora write it (CommonVoice ``zh-CN``, FLEURS ``en_us``,
    ``cmn_hans_cn``) is reduced to its language subtag: mlkd's languages are languages.
    """
    key = value.strip().lower()
    index = _index()
    return index.get(key) or index.get(re.split(r"[-_]", key, maxsplit=1)[0])


def require_language(value: str, where: str) -> str:
    """The canonical code of ``value``; a DataError naming ``where`` (file:line) if unknown."""
    code = normalize_language(value)
    if code is None:
        raise DataError(f"{where}: unknown language {value!r}; fix: write {VALID_FORMS}")
    return code
