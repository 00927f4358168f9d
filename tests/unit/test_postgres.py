"""`--postgres URL` becomes Label Studio's database settings; bad URLs get a clear error."""

import pytest

from lensguard.postgres import PostgresDatabase, PostgresURLError


def test_url_becomes_label_studio_settings():
    database = PostgresDatabase.from_url("postgresql://ls%40team:p%2Fss@db.example.com:6543/label_studio")
    assert database.label_studio_env() == {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": "label_studio",
        "POSTGRE_USER": "ls@team",
        "POSTGRE_PASSWORD": "p/ss",
        "POSTGRE_HOST": "db.example.com",
        "POSTGRE_PORT": "6543",
    }
    defaults = PostgresDatabase.from_url("postgres://localhost/ls")
    assert (defaults.user, defaults.port, defaults.password) == ("postgres", 5432, "")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/ls", "not a PostgreSQL URL"),
        ("postgresql://postgres@localhost", "names no database"),
        ("postgresql://postgres@localhost:99999/ls", "bad port"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url, message):
    with pytest.raises(PostgresURLError, match=message):
        PostgresDatabase.from_url(url)
