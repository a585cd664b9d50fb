"""Which teachers a model-dir argument gives: its own language's, each language of a
language-adaptive student, or one clear error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mlkd_cli.errors import ConfigError, DataError
from mlkd_cli.teachers import mlkd
from mlkd_cli.teachers.load import TeacherSpec, load_teachers_of


@pytest.fixture
def model_dirs(monkeypatch, tmp_path):
    """Stand-in model dirs by name: a German teacher, a student of de/en/ru, a plain student."""
    dirs = {"teacher_de": ("de", ()), "student": (None, ("de", "en", "ru")), "plain": (None, ())}

    def load(path: Path):
        own, languages = dirs[path.name]
        return SimpleNamespace(own_language=own, languages=languages)

    monkeypatch.setattr(mlkd, "load_model_dir", load)
    monkeypatch.setattr(mlkd, "_teacher", lambda lang, path, loaded: SimpleNamespace(lang=lang, path=path))
    return tmp_path


def langs_of(path: Path, data_langs=("de", "en")) -> list[str]:
    return [t.lang for t in load_teachers_of(TeacherSpec(None, "mlkd", path), data_langs)]


def test_a_student_teaches_each_of_its_languages_the_data_has(model_dirs):
    assert langs_of(model_dirs / "student") == ["de", "en"]
    assert langs_of(model_dirs / "teacher_de") == ["de"]
    assert [t.lang for t in load_teachers_of(TeacherSpec("en", "mlkd", model_dirs / "student"), ["de", "en"])] == ["en"]


def test_a_model_dir_that_names_no_language_it_can_teach_is_refused(model_dirs):
    with pytest.raises(ConfigError, match=r"plain/config.yaml: not a teacher of one language; name its language as LANG="):
        langs_of(model_dirs / "plain")
    with pytest.raises(DataError, match=r"student: a model of de, en, ru, none of which the training data has "
                                        r"\(its languages: es, it\); leave it out"):
        langs_of(model_dirs / "student", ("es", "it"))
