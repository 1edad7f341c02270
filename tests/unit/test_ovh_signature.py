"""How the OVH emulator authenticates a request: OVH's signature, clock window and refusals."""

from __future__ import annotations

import hashlib
from http import HTTPStatus

import pytest

from lab.ovh_api import ApiError, Credentials, authenticate, ovh_signature

CREDENTIALS = Credentials("app-key", "app-secret", "consumer-key")
URL = "http://127.0.10.60:8080/1.0/domain/zone/drp-lab.test/record?fieldType=A&subDomain=www"
NOW = 1_800_000_000


def signed_headers(
    method: str = "GET",
    url: str = URL,
    body: str = "",
    timestamp: int = NOW,
    secret: str = "app-secret",
    consumer: str = "consumer-key",
    application: str = "app-key",
) -> dict[str, str]:
    return {
        "x-ovh-application": application,
        "x-ovh-consumer": consumer,
        "x-ovh-timestamp": str(timestamp),
        "x-ovh-signature": ovh_signature(secret, consumer, method, url, body, str(timestamp)),
    }


def refusal(
    headers: dict[str, str], method: str = "GET", url: str = URL, body: str = ""
) -> ApiError:
    with pytest.raises(ApiError) as caught:
        authenticate(CREDENTIALS, headers, method, url, body, NOW)
    return caught.value


def test_signature_is_sha1_of_the_documented_fields() -> None:
    text = f'app-secret+consumer-key+PUT+{URL}+{{"target":"127.0.10.4"}}+{NOW}'
    expected = "$1$" + hashlib.sha1(text.encode()).hexdigest()
    assert (
        ovh_signature("app-secret", "consumer-key", "put", URL, '{"target":"127.0.10.4"}', str(NOW))
        == expected
    )


def test_correctly_signed_request_passes() -> None:
    body = '{"target":"127.0.10.4"}'
    authenticate(CREDENTIALS, signed_headers("PUT", body=body), "PUT", URL, body, NOW)


def test_unknown_application_key_is_refused_first() -> None:
    error = refusal(signed_headers(application="other-app", secret="wrong"))
    assert error.status == HTTPStatus.FORBIDDEN
    assert error.body == {
        "errorCode": "INVALID_KEY",
        "httpCode": "403 Forbidden",
        "message": "Invalid application key",
    }


def test_missing_consumer_key_asks_to_log_in() -> None:
    headers = signed_headers()
    del headers["x-ovh-consumer"]
    error = refusal(headers)
    assert (error.status, error.body["errorCode"]) == (HTTPStatus.UNAUTHORIZED, "NOT_AUTHENTICATED")


def test_unknown_consumer_key_is_not_a_credential() -> None:
    error = refusal(signed_headers(consumer="someone-else"))
    assert error.status == HTTPStatus.FORBIDDEN
    assert error.body["errorCode"] == "NOT_CREDENTIAL"
    assert error.body["message"] == "This credential does not exist"


@pytest.mark.parametrize("offset", [-181, 181, -600])
def test_timestamp_outside_the_window_is_out_of_time(offset: int) -> None:
    error = refusal(signed_headers(timestamp=NOW + offset))
    assert error.status == HTTPStatus.BAD_REQUEST
    assert error.body["errorCode"] == "QUERY_TIME_OUT"
    assert error.body["message"] == "Query out of time"


@pytest.mark.parametrize("offset", [-180, 0, 180])
def test_timestamp_inside_the_window_passes(offset: int) -> None:
    authenticate(CREDENTIALS, signed_headers(timestamp=NOW + offset), "GET", URL, "", NOW)


def test_wrong_secret_is_an_invalid_signature() -> None:
    error = refusal(signed_headers(secret="not-the-secret"))
    assert error.status == HTTPStatus.BAD_REQUEST
    assert error.body["errorCode"] == "INVALID_SIGNATURE"


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("DELETE", URL, ""),  # another method
        ("GET", URL.replace("www", "mail"), ""),  # another query string
        ("GET", URL.replace("http://", "https://"), ""),  # another base URL
        ("GET", URL, '{"target":"127.0.10.66"}'),  # another body
    ],
)
def test_signature_covers_method_url_and_body(method: str, url: str, body: str) -> None:
    error = refusal(signed_headers(), method=method, url=url, body=body)
    assert error.body["errorCode"] == "INVALID_SIGNATURE"


def test_credentials_repr_hides_the_secrets() -> None:
    assert "app-secret" not in repr(CREDENTIALS)
    assert "consumer-key" not in repr(CREDENTIALS)
