from carmenta.db import describe_url, libpq_url, sqlalchemy_url


def test_urls_are_normalised_for_each_driver():
    assert sqlalchemy_url("postgres://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert libpq_url("postgresql+psycopg://u:p@h/db") == "postgresql://u:p@h/db"
    socket_url = "postgresql://postgres:@/carmenta?host=/tmp/sock"
    assert sqlalchemy_url(socket_url) == "postgresql+psycopg://postgres:@/carmenta?host=/tmp/sock"


def test_described_urls_never_show_the_password():
    described = describe_url("postgresql://alice:s3cret-pw@db.example.com:5432/carmenta")
    assert "s3cret-pw" not in described
    assert "alice" in described and "db.example.com" in described
