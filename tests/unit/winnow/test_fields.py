"""winnow.fields.read_toml: the one reader of users' TOML files (catalogs, --config)."""

import pytest

from winnow.fields import read_toml


class Bad(ValueError):
    pass


class Missing(ValueError):
    pass


def test_read_toml_returns_the_expanded_path_and_the_tables(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\nname = "x"\n', encoding="utf-8")
    path, raw = read_toml(f, what="--config", error=Bad)
    assert path == f and raw == {"run": {"name": "x"}}


def test_a_missing_file_raises_the_missing_error_quoting_the_path(tmp_path):
    with pytest.raises(Missing, match=r"catalog file '.*nope\.toml' does not exist"):
        read_toml(tmp_path / "nope.toml", what="catalog file", error=Bad, missing=Missing)
    with pytest.raises(Bad, match="does not exist"):  # without `missing`, the one error
        read_toml(tmp_path / "nope.toml", what="--config", error=Bad)


@pytest.mark.parametrize("content", [b"[run\nname = 1\n", b"name = \"\xff\xfe\"\n"])
def test_broken_toml_or_bytes_raise_one_error_quoting_the_path(tmp_path, content):
    f = tmp_path / "broken.toml"
    f.write_bytes(content)
    with pytest.raises(Bad, match=r"--config '.*broken\.toml' is not valid TOML"):
        read_toml(f, what="--config", error=Bad)
