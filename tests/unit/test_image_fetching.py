"""Image fetching against hostile URLs: SSRF (names resolving to internal addresses), rebinding, redirects,
path escapes, log forging, cloud-storage URIs, odd hosts and odd token-refresh answers."""

import base64
import logging
import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from labelstudio.images import ImageFetcher, ImageFetchError, is_public
from labelstudio.tokens import LabelStudioAuth, LabelStudioAuthError

TOKEN = "legacy-token-1234567890"
IMAGE = b"\xff\xd8 some image bytes"


class Resolver:
    """Answers getaddrinfo for made-up names; counts the lookups (a second one would allow rebinding)."""

    def __init__(self, **names: str):
        self.names = {name.replace("_", "."): address for name, address in names.items()}
        self.calls: list[str] = []

    def __call__(self, host, port, type=0):
        self.calls.append(host)
        if host not in self.names:
            raise socket.gaierror("unknown name")
        address = self.names[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


def fetcher_for(server, resolver=None, **options) -> ImageFetcher:
    return ImageFetcher(
        server.url,
        LabelStudioAuth(server.url, TOKEN),
        resolver=resolver or Resolver(),
        **options,
    )


def port_of(server) -> int:
    return urlsplit(server.url).port


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254"])
def test_an_allowed_name_resolving_to_an_internal_address_is_refused(file_server, address):
    file_server.files["/secret"] = b"internal"
    resolver = Resolver(internal_example=address)
    fetcher = fetcher_for(file_server, resolver, allowed_hosts=["internal.example", "*"])
    with pytest.raises(ImageFetchError) as error:
        fetcher.fetch(f"http://internal.example:{port_of(file_server)}/secret")
    assert "refused" in str(error.value) and address not in str(error.value)
    assert file_server.seen_paths == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    ],
)
def test_internal_addresses_are_not_public(address):
    import ipaddress

    assert not is_public(ipaddress.ip_address(address))


def test_public_addresses_including_ipv4_mapped_ones_are_public():
    import ipaddress

    for address in ("8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "literal", ["http://127.0.0.1:{port}/x", "http://[::1]:{port}/x", "http://[::ffff:7f00:1]:{port}/x"]
)
def test_literal_internal_addresses_are_refused_even_with_a_wildcard(file_server, literal):
    fetcher = fetcher_for(file_server, allowed_hosts=["*"])
    with pytest.raises(ImageFetchError, match="refused"):
        fetcher.fetch(literal.format(port=port_of(file_server)))


def test_an_allow_listed_network_is_fetched_from_the_checked_address_with_the_name_as_host(file_server):
    file_server.files["/img.jpg"] = IMAGE
    resolver = Resolver(images_internal="127.0.0.1")
    fetcher = fetcher_for(file_server, resolver, allowed_hosts=["images.internal"], allowed_networks=["127.0.0.0/8"])
    url = f"http://images.internal:{port_of(file_server)}/img.jpg"
    assert fetcher.fetch(url) == IMAGE
    assert resolver.calls == ["images.internal"]  # one lookup: the connection goes to the address checked
    assert file_server.seen_hosts == [f"images.internal:{port_of(file_server)}"]
    assert file_server.seen_auth == [None]  # the Label Studio token never goes elsewhere


def test_one_redirect_hop_to_an_allowed_host_is_followed_and_two_are_not(file_server):
    port = port_of(file_server)
    file_server.files["/final.jpg"] = IMAGE
    file_server.redirects["/first"] = f"http://cdn.test:{port}/final.jpg"
    file_server.redirects["/hop1"] = f"http://cdn.test:{port}/first"
    resolver = Resolver(cdn_test="127.0.0.1", origin_test="127.0.0.1")
    fetcher = fetcher_for(
        file_server, resolver, allowed_hosts=["cdn.test", "origin.test"], allowed_networks=["127.0.0.1"]
    )
    assert fetcher.fetch(f"http://origin.test:{port}/first") == IMAGE
    with pytest.raises(ImageFetchError, match="more than one redirect"):
        fetcher.fetch(f"http://origin.test:{port}/hop1")


def test_a_redirect_to_an_internal_or_unlisted_host_is_refused(file_server):
    port = port_of(file_server)
    file_server.redirects["/to-metadata"] = "http://169.254.169.254/latest/meta-data/"
    file_server.redirects["/to-elsewhere"] = f"http://elsewhere.test:{port}/x.jpg"
    resolver = Resolver(origin_test="127.0.0.1", elsewhere_test="127.0.0.1")
    fetcher = fetcher_for(file_server, resolver, allowed_hosts=["origin.test"], allowed_networks=["127.0.0.1"])
    for path in ("/to-metadata", "/to-elsewhere"):
        with pytest.raises(ImageFetchError, match="refused"):
            fetcher.fetch(f"http://origin.test:{port}{path}")


@pytest.mark.parametrize(
    "url",
    [
        "/data/upload/../../etc/passwd",
        "/data/upload/%2e%2e/%2e%2e/etc/passwd",
        "/data/./upload/1/x.jpg",
        "/static/secret.js",
        "/user/account",
        "/data/..%5c..%5cetc",
    ],
)
def test_relative_urls_cannot_escape_label_studio_data_and_api_paths(file_server, url):
    fetcher = fetcher_for(file_server)
    with pytest.raises(ImageFetchError, match="refused"):
        fetcher.fetch(url)
    assert file_server.seen_auth == []  # the token went nowhere


def test_cr_lf_in_an_image_url_never_reaches_the_log(file_server, caplog):
    fetcher = fetcher_for(file_server)
    with caplog.at_level(logging.DEBUG):
        [result] = fetcher.fetch_many(["/data/upload/1/x.jpg\r\n2026-01-01 INFO forged: admin logged in"])
    assert isinstance(result, ImageFetchError) and "control characters" in str(result)
    assert "forged" not in str(result) and "forged" not in caplog.text


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://example.com:99999/x.jpg", "http://example.com:abc/x.jpg", "http://x/" + "a" * 65_536],
)
def test_malformed_urls_are_per_task_errors(file_server, url):
    fetcher = fetcher_for(file_server, allowed_hosts=["*"])
    [result] = fetcher.fetch_many([url])
    assert isinstance(result, ImageFetchError) and "refused" in str(result)


def test_cloud_storage_uris_are_resolved_by_label_studio_then_one_presigned_hop(file_server):
    port = port_of(file_server)
    uri = "s3://bucket/frames/one.jpg"
    encoded = base64.urlsafe_b64encode(uri.encode()).decode()
    file_server.redirects[f"/tasks/42/resolve/?fileuri={encoded.replace('=', '%3D')}"] = (
        f"http://bucket.s3.test:{port}/frames/one.jpg?X-Amz-Signature=abc"
    )
    file_server.files["/frames/one.jpg?X-Amz-Signature=abc"] = IMAGE
    resolver = Resolver(bucket_s3_test="127.0.0.1")
    fetcher = fetcher_for(file_server, resolver, allowed_hosts=["bucket.s3.test"], allowed_networks=["127.0.0.1"])
    assert fetcher.fetch(uri, task_id=42) == IMAGE
    resolve_path, presigned_path = file_server.seen_paths
    assert resolve_path.startswith("/tasks/42/resolve/?fileuri=")
    assert presigned_path == "/frames/one.jpg?X-Amz-Signature=abc"
    assert parse_qs(urlsplit(resolve_path).query)["fileuri"] == [encoded]
    assert file_server.seen_auth == [f"Token {TOKEN}", None]
    with pytest.raises(ImageFetchError, match="no task or project id"):
        fetcher.fetch("gs://bucket/x.jpg")
    fetcher.fetch_many(["azure-blob://container/x.jpg"], project="7")
    assert file_server.seen_paths[-1].startswith("/projects/7/resolve/?fileuri=")


def test_a_malformed_content_length_from_an_image_host_is_a_per_task_error(file_server):
    file_server.required_auth = f"Token {TOKEN}"
    file_server.files["/data/upload/1/odd.jpg"] = IMAGE
    file_server.headers["/data/upload/1/odd.jpg"] = {"Content-Length": "abc"}
    [result] = fetcher_for(file_server).fetch_many(["/data/upload/1/odd.jpg"])
    assert isinstance(result, ImageFetchError) and "unavailable" in str(result)


def test_an_image_host_answer_names_no_status_code_or_url(file_server):
    [result] = fetcher_for(file_server).fetch_many(["/data/upload/1/internal-name.jpg"])
    assert str(result) == "image unavailable: its host did not serve it"


def test_a_non_json_token_refresh_answer_is_a_clear_auth_error(file_server):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.sig"
    file_server.posts["/api/token/refresh"] = (200, b"<html>login</html>")
    with pytest.raises(LabelStudioAuthError, match="refused the personal access token"):
        LabelStudioAuth(file_server.url, jwt).header()
    fetcher = ImageFetcher(file_server.url, LabelStudioAuth(file_server.url, jwt))
    [result] = fetcher.fetch_many(["/data/upload/1/x.jpg"])
    assert isinstance(result, ImageFetchError) and jwt not in str(result)
