from django.test import Client


def test_healthz_is_200_with_database_and_channel_layer_up(db):
    response = Client(HTTP_HOST="localhost").get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True
    assert response["X-Request-ID"]


def test_healthz_answers_on_tenant_domains_too(tenant_a):
    response = Client(HTTP_HOST="alpha.localhost").get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True
