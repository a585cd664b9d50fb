"""Transcript normalisation of `mlkd prepare --normalize-text`."""

from __future__ import annotations

import pytest

from mlkd_cli.data.text import normalize_transcript


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("Don’t stop — it's “fine”!", "don't stop it's fine"),
        ("L'uomo, però, è qui.", "l'uomo però è qui"),
        ("'Quoted' words", "quoted words"),
        ("Straße: GROSS?", "straße gross"),
        ("Ёлки-палки, сказал он.", "ёлки палки сказал он"),
        ("¿Qué tal? ¡Bien!", "qué tal bien"),
        ("Es kostet 5 € (netto) & 20 %", "es kostet 5 netto 20"),
        ("你好，世界。", "你好 世界"),
        ("  many\t spaces \n", "many spaces"),
        ("e\u0301te\u0301", "été"),  # combining accents are composed (NFC)
        ("?!", ""),
    ],
)
def test_normalize_transcript(raw: str, normalized: str) -> None:
    assert normalize_transcript(raw) == normalized
