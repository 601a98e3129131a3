"""Host allowlist, Origin checks, no CORS, CSP, tokens off loopback, static files only."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmvis.server import static
from llmvis.server.run import ServeError, bind, url_for
from llmvis.server.security import split_host
from server_helpers import client, make_app, parse_sse
from tiny_models import tiny_loaded

RUN = {"mode": "completion", "prompt": "hi", "params": {"temperature": 0, "max_new_tokens": 2}}


@pytest.fixture
def c(tmp_path):
    with client(make_app(tmp_path, tiny_loaded("llama"))) as c:
        yield c


@pytest.mark.parametrize("host", ["127.0.0.1:5050", "localhost:5050", "[::1]:5050", "LOCALHOST", "127.0.0.1"])
def test_loopback_hosts_are_allowed(c, host):
    assert c.get("/api/health", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5050", "127.0.0.1.evil.example", "192.168.1.9:5050"])
def test_rebinding_host_headers_are_refused(c, host):
    r = c.get("/api/health", headers={"host": host})
    assert r.status_code == 403 and "DNS rebinding" in r.json()["detail"]
    assert c.post("/api/runs", json=RUN, headers={"host": host}).status_code == 403


@pytest.mark.parametrize("host", ["", "a b", "x@127.0.0.1", "[::1", "127.0.0.1:port"])
def test_malformed_host_headers_are_400(c, host):
    assert c.get("/api/health", headers={"host": host}).status_code == 400


def test_cross_origin_writes_are_refused(c):
    for origin in ("http://evil.example", "null", "http://localhost:5050", "https://127.0.0.1:5050"):
        assert c.post("/api/runs", json=RUN, headers={"origin": origin}).status_code == 403, origin
    assert c.get("/api/runs").json()["total"] == 0  # nothing ran
    events = parse_sse(c.post("/api/runs", json=RUN, headers={"origin": "http://127.0.0.1:5050"}).content)
    run_id = events[-1].json()["run_id"]
    assert c.delete(f"/api/runs/{run_id}", headers={"origin": "http://evil.example"}).status_code == 403
    assert (
        c.patch(f"/api/runs/{run_id}", json={"title": "x"}, headers={"origin": "http://evil.example"}).status_code
        == 403
    )
    assert c.post("/api/runs", json=RUN, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    assert c.get(f"/api/runs/{run_id}").status_code == 200  # still there
    assert (
        c.post("/api/model/load", json={"spec": "smollm2"}, headers={"origin": "http://evil.example"}).status_code
        == 403
    )


def test_no_cors_and_a_strict_csp(c):
    r = c.options("/api/runs", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = c.get("/api/health", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'self'") and "img-src 'self' data: blob:" in csp
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"
    assert c.get("/", headers={"host": "evil.example"}).headers["content-security-policy"] == csp


def test_docs_pages_that_need_a_cdn_are_off_but_the_schema_is_served(c):
    assert c.get("/docs").status_code == 404
    assert c.get("/openapi.json").json()["info"]["title"] == "llmvis"


def test_off_loopback_a_token_is_required(tmp_path):
    app = make_app(tmp_path, tiny_loaded("llama"), host="0.0.0.0")
    token = app.state.token
    assert token and len(token) >= 24
    with TestClient(app, base_url="http://192.168.1.9:5050") as c:  # any Host: the token protects
        r = c.get("/api/health")
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert c.get("/api/health", params={"token": "wrong"}).status_code == 401
        assert c.get("/api/health", headers={"authorization": f"Bearer {token}"}).status_code == 200
        r = c.get("/", params={"token": token})
        assert "llmvis_token=" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        assert c.get("/api/health").status_code == 200  # the cookie now carries the token
        c.cookies.clear()
        assert c.get("/api/health").status_code == 401


def test_a_given_token_is_required_on_loopback_too(tmp_path):
    app = make_app(tmp_path, None, token="s3cret-token")
    with client(app) as c:
        assert c.get("/api/health").status_code == 401
        assert c.get("/api/health", headers={"authorization": "Bearer s3cret-token"}).status_code == 200


def test_a_specific_bound_host_is_allowed(tmp_path):
    app = make_app(tmp_path, None, host="192.168.1.9", token="s3cret-token")
    with TestClient(app, base_url="http://192.168.1.9:5050", headers={"authorization": "Bearer s3cret-token"}) as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"host": "evil.example"}).status_code == 403


def test_without_a_build_the_index_says_how_to_make_one(tmp_path):
    app = FastAPI()
    app.include_router(static.build_router(tmp_path / "static"))
    with TestClient(app) as c:
        r = c.get("/")
        assert r.status_code == 503 and "make run" in r.text and r.headers["content-type"].startswith("text/html")


def test_only_index_and_hashed_assets_are_served(tmp_path):
    root = tmp_path / "static"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>llmvis</title>")
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    (root / "secret.txt").write_text("no")
    (tmp_path / "outside.txt").write_text("no")
    app = FastAPI()
    app.include_router(static.build_router(root))
    with TestClient(app) as c:
        assert c.get("/").text.startswith("<!doctype html>")
        r = c.get("/assets/index-abc123.js")
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        for path in (
            "/secret.txt",
            "/index.html",
            "/assets/",
            "/assets",
            "/assets/../secret.txt",
            "/assets/%2e%2e/secret.txt",
            "/assets/..%2fsecret.txt",
            "/assets/..%2f..%2foutside.txt",
            "/assets/.hidden",
            "/assets/missing.js",
            "/static/index.html",
            "/assets/sub%2findex-abc123.js",
        ):
            r = c.get(path)
            assert r.status_code == 404 and r.text != "no", path


def test_split_host():
    assert split_host("LocalHost:5050") == "localhost"
    assert split_host("[::1]:80") == "::1"
    assert split_host("[::1]x") is None and split_host("a:b") is None


def test_port_in_use_is_a_clear_error_or_the_next_free_port():
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ServeError, match=f"port {port} is already in use"):
            bind("127.0.0.1", port)
    finally:
        taken.close()
    first = bind("127.0.0.1", None)  # no port named: 5050 or the next free one
    second = bind("127.0.0.1", None)
    try:
        assert 5050 <= first.getsockname()[1] < second.getsockname()[1] < 5070
    finally:
        first.close()
        second.close()
    assert url_for("0.0.0.0", 5050, "tok") == "http://127.0.0.1:5050/?token=tok"
    assert url_for("::1", 5050, None) == "http://[::1]:5050/"
