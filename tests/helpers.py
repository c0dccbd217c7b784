from django.test import Client
from django_tenants.utils import tenant_context

from tests.factories import UserFactory


def staff_client(tenant, username: str, *, superuser: bool = True) -> Client:
    """A test client on the tenant's domain, logged in as a staff user of that tenant.

    The session row is written in the tenant's schema, where the request will read it.
    """
    with tenant_context(tenant):
        user = UserFactory(username=username, is_superuser=superuser)
        client = Client(HTTP_HOST=tenant.get_primary_domain().domain)
        client.force_login(user)
    return client


def database_url(settings_dict) -> str:
    """A DATABASE_URL for a subprocess (worker, server) pointing at the test database."""
    host, port = settings_dict["HOST"], settings_dict["PORT"]
    user, password = settings_dict["USER"], settings_dict["PASSWORD"]
    auth = user + (f":{password}" if password else "")
    if str(host).startswith("/"):
        return f"postgresql://{auth}@/{host}/{settings_dict['NAME']}"
    return f"postgresql://{auth}@{host}:{port or 5432}/{settings_dict['NAME']}"


def plain_session(settings_dict, *, autocommit: bool = False):
    """A psycopg session on the test database outside Django (socket or TCP host alike: a
    socket directory in a URL's path would be read as the database name)."""
    import psycopg

    params = {"dbname": settings_dict["NAME"], "user": settings_dict["USER"],
              "host": settings_dict["HOST"]}  # fmt: skip
    if settings_dict["PORT"]:
        params["port"] = settings_dict["PORT"]
    if settings_dict["PASSWORD"]:
        params["password"] = settings_dict["PASSWORD"]
    return psycopg.connect(psycopg.conninfo.make_conninfo(**params), autocommit=autocommit)
