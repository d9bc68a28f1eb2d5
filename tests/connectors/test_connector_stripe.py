"""Stripe connector: one row per action, form bodies, money parameters."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector

STRIPE = get_connector("stripe")
URL = "https://api.stripe.com"
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)

# method path | form body | action risk | parameters (JSON; ids are `id`)
TABLE = """
GET /v1/charges | | stripe.charge.list low | {}
GET /v1/charges/ch_1 | | stripe.charge.get low | {"id": "ch_1"}
GET /v1/charges/search?query=x | | stripe.charge.search low | {}
POST /v1/charges | amount=2000&currency=usd&customer=cus_1&description=x | stripe.charge.create medium | {"amount": 2000, "currency": "usd", "customer": "cus_1"}
POST /v1/charges/ch_1 | description=y | stripe.charge.update low | {"id": "ch_1"}
POST /v1/charges/ch_1/capture | amount=500 | stripe.charge.capture medium | {"id": "ch_1", "amount": 500}
GET /v1/refunds | | stripe.refund.list low | {}
GET /v1/refunds/re_1 | | stripe.refund.get low | {"id": "re_1"}
POST /v1/refunds | charge=ch_1&amount=100&reason=duplicate | stripe.refund.create high | {"charge": "ch_1", "amount": 100, "reason": "duplicate"}
POST /v1/refunds/re_1 | metadata[a]=b | stripe.refund.update low | {"id": "re_1"}
POST /v1/refunds/re_1/cancel | | stripe.refund.cancel low | {"id": "re_1"}
POST /v1/charges/ch_1/refunds | amount=100&reason=duplicate | stripe.refund.create high | {"charge": "ch_1", "amount": 100, "reason": "duplicate"}
POST /v1/charges/ch_1/refund | | stripe.refund.create high | {"charge": "ch_1"}
POST /v1/payment_intents/pi_1/refund | amount=5 | stripe.refund.create high | {"payment_intent": "pi_1", "amount": 5}
GET /v1/payment_intents | | stripe.payment_intent.list low | {}
GET /v1/payment_intents/pi_1 | | stripe.payment_intent.get low | {"id": "pi_1"}
GET /v1/payment_intents/search | | stripe.payment_intent.search low | {}
POST /v1/payment_intents | amount=999&currency=eur&confirm=true | stripe.payment_intent.create medium | {"amount": 999, "currency": "eur", "confirm": "true"}
POST /v1/payment_intents/pi_1 | amount=5 | stripe.payment_intent.update medium | {"id": "pi_1", "amount": 5}
POST /v1/payment_intents/pi_1/confirm | | stripe.payment_intent.confirm medium | {"id": "pi_1"}
POST /v1/payment_intents/pi_1/capture | amount_to_capture=300 | stripe.payment_intent.capture medium | {"id": "pi_1", "amount_to_capture": 300}
POST /v1/payment_intents/pi_1/cancel | | stripe.payment_intent.cancel low | {"id": "pi_1"}
GET /v1/customers | | stripe.customer.list low | {}
GET /v1/customers/cus_1 | | stripe.customer.get low | {"id": "cus_1"}
GET /v1/customers/search | | stripe.customer.search low | {}
POST /v1/customers | email=a%40b.com&name=A+B | stripe.customer.create low | {"email": "a@b.com"}
POST /v1/customers/cus_1 | email=c%40d.com | stripe.customer.update low | {"id": "cus_1", "email": "c@d.com"}
DELETE /v1/customers/cus_1 | | stripe.customer.delete high | {"id": "cus_1"}
GET /v1/subscriptions | | stripe.subscription.list low | {}
GET /v1/subscriptions/sub_1 | | stripe.subscription.get low | {"id": "sub_1"}
POST /v1/subscriptions | customer=cus_1&items[0][price]=p | stripe.subscription.create medium | {"customer": "cus_1"}
POST /v1/subscriptions/sub_1 | cancel_at_period_end=true | stripe.subscription.update medium | {"id": "sub_1", "cancel_at_period_end": "true"}
DELETE /v1/subscriptions/sub_1 | | stripe.subscription.cancel medium | {"id": "sub_1"}
GET /v1/invoices | | stripe.invoice.list low | {}
GET /v1/invoices/in_1 | | stripe.invoice.get low | {"id": "in_1"}
POST /v1/invoices | customer=cus_1 | stripe.invoice.create low | {"customer": "cus_1"}
POST /v1/invoices/in_1 | description=x | stripe.invoice.update low | {"id": "in_1"}
DELETE /v1/invoices/in_1 | | stripe.invoice.delete medium | {"id": "in_1"}
POST /v1/invoices/in_1/finalize | | stripe.invoice.finalize medium | {"id": "in_1"}
POST /v1/invoices/in_1/pay | | stripe.invoice.pay medium | {"id": "in_1"}
POST /v1/invoices/in_1/send | | stripe.invoice.send medium | {"id": "in_1"}
POST /v1/invoices/in_1/void | | stripe.invoice.void medium | {"id": "in_1"}
GET /v1/transfers | | stripe.transfer.list low | {}
GET /v1/transfers/tr_1 | | stripe.transfer.get low | {"id": "tr_1"}
POST /v1/transfers | amount=25000&currency=usd&destination=acct_xyz | stripe.transfer.create high | {"amount": 25000, "currency": "usd", "destination": "acct_xyz"}
POST /v1/transfers/tr_1 | description=x | stripe.transfer.update low | {"id": "tr_1"}
POST /v1/transfers/tr_1/reversals | amount=100 | stripe.transfer.reverse medium | {"id": "tr_1", "amount": 100}
GET /v1/payouts | | stripe.payout.list low | {}
GET /v1/payouts/po_1 | | stripe.payout.get low | {"id": "po_1"}
POST /v1/payouts | amount=700&currency=usd&method=instant | stripe.payout.create high | {"amount": 700, "currency": "usd", "method": "instant"}
POST /v1/payouts/po_1 | metadata[x]=1 | stripe.payout.update low | {"id": "po_1"}
POST /v1/payouts/po_1/cancel | | stripe.payout.cancel low | {"id": "po_1"}
GET /v1/products | | stripe.product.list low | {}
GET /v1/products/prod_1 | | stripe.product.get low | {"id": "prod_1"}
GET /v1/products/search | | stripe.product.search low | {}
POST /v1/products | name=Widget | stripe.product.create low | {"name": "Widget"}
POST /v1/products/prod_1 | active=false | stripe.product.update low | {"id": "prod_1", "active": "false"}
DELETE /v1/products/prod_1 | | stripe.product.delete medium | {"id": "prod_1"}
GET /v1/prices | | stripe.price.list low | {}
GET /v1/prices/price_1 | | stripe.price.get low | {"id": "price_1"}
POST /v1/prices | unit_amount=1200&currency=usd&product=prod_1 | stripe.price.create low | {"unit_amount": 1200, "currency": "usd", "product": "prod_1"}
POST /v1/prices/price_1 | active=true | stripe.price.update low | {"id": "price_1", "active": "true"}
GET /v1/balance | | stripe.balance.get low | {}
GET /v1/balance_transactions | | stripe.balance_transaction.list low | {}
GET /v1/balance_transactions/txn_1 | | stripe.balance_transaction.get low | {"id": "txn_1"}
GET /v1/checkout/sessions | | stripe.checkout_session.list low | {}
GET /v1/checkout/sessions/cs_1 | | stripe.checkout_session.get low | {"id": "cs_1"}
POST /v1/checkout/sessions | mode=payment&customer=cus_1 | stripe.checkout_session.create low | {"mode": "payment", "customer": "cus_1"}
POST /v1/checkout/sessions/cs_1/expire | | stripe.checkout_session.expire low | {"id": "cs_1"}
GET /v1/setup_intents | | stripe.setup_intent.list low | {}
GET /v1/setup_intents/seti_1 | | stripe.setup_intent.get low | {"id": "seti_1"}
POST /v1/setup_intents | customer=cus_1 | stripe.setup_intent.create low | {"customer": "cus_1"}
POST /v1/setup_intents/seti_1 | description=x | stripe.setup_intent.update low | {"id": "seti_1"}
POST /v1/setup_intents/seti_1/confirm | | stripe.setup_intent.confirm low | {"id": "seti_1"}
POST /v1/setup_intents/seti_1/cancel | | stripe.setup_intent.cancel low | {"id": "seti_1"}
GET /v1/payment_methods | | stripe.payment_method.list low | {}
GET /v1/payment_methods/pm_1 | | stripe.payment_method.get low | {"id": "pm_1"}
POST /v1/payment_methods | type=card | stripe.payment_method.create low | {"type": "card"}
POST /v1/payment_methods/pm_1 | billing_details[name]=x | stripe.payment_method.update low | {"id": "pm_1"}
POST /v1/payment_methods/pm_1/attach | customer=cus_1 | stripe.payment_method.attach medium | {"id": "pm_1", "customer": "cus_1"}
POST /v1/payment_methods/pm_1/detach | | stripe.payment_method.detach medium | {"id": "pm_1"}
GET /v1/accounts | | stripe.account.list low | {}
GET /v1/accounts/acct_1 | | stripe.account.get low | {"id": "acct_1"}
POST /v1/accounts | type=express&country=US | stripe.account.create high | {"type": "express", "country": "US"}
POST /v1/accounts/acct_1 | business_type=company | stripe.account.update medium | {"id": "acct_1"}
DELETE /v1/accounts/acct_1 | | stripe.account.delete high | {"id": "acct_1"}
GET /v1/webhook_endpoints | | stripe.webhook_endpoint.list low | {}
GET /v1/webhook_endpoints/we_1 | | stripe.webhook_endpoint.get low | {"id": "we_1"}
POST /v1/webhook_endpoints | url=https%3A%2F%2Fevil.test%2Fh&enabled_events[0]=* | stripe.webhook_endpoint.create high | {"url": "https://evil.test/h"}
POST /v1/webhook_endpoints/we_1 | url=https%3A%2F%2Fx.test | stripe.webhook_endpoint.update high | {"id": "we_1", "url": "https://x.test"}
DELETE /v1/webhook_endpoints/we_1 | | stripe.webhook_endpoint.delete high | {"id": "we_1"}
GET /v1/disputes | | stripe.dispute.list low | {}
GET /v1/disputes/dp_1 | | stripe.dispute.get low | {"id": "dp_1"}
POST /v1/disputes/dp_1 | evidence[product_description]=x | stripe.dispute.update medium | {"id": "dp_1"}
POST /v1/disputes/dp_1/close | | stripe.dispute.close high | {"id": "dp_1"}
GET /v1/coupons | | stripe.coupon.list low | {}
GET /v1/coupons/co_1 | | stripe.coupon.get low | {"id": "co_1"}
POST /v1/coupons | percent_off=25 | stripe.coupon.create medium | {"percent_off": "25"}
DELETE /v1/coupons/co_1 | | stripe.coupon.delete medium | {"id": "co_1"}
GET /v1/events | | stripe.event.list low | {}
GET /v1/events/evt_1 | | stripe.event.get low | {"id": "evt_1"}
"""  # noqa: E501 - a data table reads better one row per line

ROWS = [tuple(part.strip() for part in line.split("|")) for line in TABLE.strip().splitlines()]


@pytest.mark.parametrize("row", ROWS, ids=[r[2].split()[0] + ":" + r[0] for r in ROWS])
def test_stripe_row(row: tuple[str, ...]) -> None:
    target, body, expected, params = row
    method, path = target.split(" ", 1)
    action, risk = expected.split()
    request = HttpRequest.from_url(method, URL + path, headers=FORM, body=body.encode())
    parsed = STRIPE.parse(request)
    assert (parsed.action_type, parsed.risk) == (action, risk)
    assert parsed.spec.parameters == json.loads(params)
    assert ActionSpec.model_validate(parsed.spec.to_dict()) == parsed.spec


def test_every_stripe_action_has_a_row() -> None:
    named = {row[2].split()[0] for row in ROWS}
    assert named == {info.type for info in STRIPE.actions()}
    assert len(named) >= 40


def parse(body: bytes, *, complete: bool = True, path: str = "/v1/transfers") -> object:
    request = HttpRequest.from_url(
        "POST", URL + path, headers=FORM, body=body, body_complete=complete
    )
    return STRIPE.parse(request).spec.parameters


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"amount=100&amount=999999&currency=usd", "duplicate `amount`"),
        (b"amount=1e6", "`amount` is not an integer"),
        (b"amount=%20100", "`amount` is not an integer"),
        (b"amount=0x10", "`amount` is not an integer"),
        (b"amount=100&currency=%ff", "not UTF-8"),
        (b"amount=100&currency=\xc3\xa9", "non-ASCII"),
    ],
)
def test_malformed_forms_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        parse(body)


def test_same_value_twice_is_fine_and_plus_is_space() -> None:
    assert parse(b"amount=100&amount=100&currency=usd&destination=acct+1") == {
        "amount": 100,
        "currency": "usd",
        "destination": "acct 1",
    }


def test_query_and_body_must_agree() -> None:
    request = HttpRequest(
        "POST", "https", "api.stripe.com", None, "/v1/transfers", "amount=1", FORM, b"amount=100000"
    )
    with pytest.raises(ConnectorError, match="conflicting `amount`"):
        STRIPE.parse(request)


def test_truncated_form_is_refused_since_an_amount_could_hide_past_it() -> None:
    with pytest.raises(ConnectorError, match="larger than 65536 bytes"):
        parse(b"description=" + b"x" * 100, complete=False)


def test_connect_account_header_is_the_resource_account() -> None:
    headers = (*FORM, ("Stripe-Account", "acct_connected"))
    request = HttpRequest.from_url(
        "POST", URL + "/v1/refunds", headers=headers, body=b"charge=ch_1"
    )
    assert STRIPE.parse(request).spec.resource.account == "acct_connected"


def test_build_seed_transfer_and_its_v1_alias() -> None:
    for action in ("stripe.transfer.create", "payment.transfer.initiate"):
        spec = parse_action_spec(
            {
                "type": action,
                "resource": {"provider": "stripe"},
                "parameters": {
                    "amount": 25000,
                    "currency": "usd",
                    "destination": "acct_xyz",
                    "metadata": {"order": "42"},
                },
            }
        )
        built = STRIPE.build_request(spec)
        assert (built.method, built.url) == ("POST", "https://api.stripe.com/v1/transfers")
        assert built.header("content-type") == "application/x-www-form-urlencoded"
        assert dict(parse_qsl(built.body.decode())) == {
            "amount": "25000",
            "currency": "usd",
            "destination": "acct_xyz",
            "metadata[order]": "42",
        }
        assert STRIPE.parse(built).action_type == "stripe.transfer.create"


def test_build_refund_by_id_and_list_with_query() -> None:
    cancel = STRIPE.build_request(
        parse_action_spec({"type": "stripe.refund.cancel", "parameters": {"id": "re_1"}})
    )
    assert cancel.url == "https://api.stripe.com/v1/refunds/re_1/cancel"
    listing = STRIPE.build_request(
        parse_action_spec({"type": "stripe.charge.list", "parameters": {"limit": 3}})
    )
    assert listing.url == "https://api.stripe.com/v1/charges?limit=3"
    with pytest.raises(ConnectorError, match="missing parameter `id`"):
        STRIPE.build_request(parse_action_spec({"type": "stripe.refund.cancel"}))


def test_stripe_credentials_and_fallback() -> None:
    assert STRIPE.auth_headers("sk_live_x") == [("Authorization", "Bearer sk_live_x")]
    parsed = STRIPE.parse(HttpRequest.from_url("DELETE", URL + "/v1/terminal/readers/x"))
    assert (parsed.action_type, parsed.risk) == ("stripe.unknown.delete", "high")


def test_payment_method_query_is_not_a_method_override() -> None:
    request = HttpRequest.from_url("GET", URL + "/v1/setup_intents?payment_method=pm_1&limit=3")
    assert STRIPE.parse(request).action_type == "stripe.setup_intent.list"


def test_compressed_body_is_refused() -> None:
    headers = (*FORM, ("Content-Encoding", "gzip"))
    request = HttpRequest.from_url("POST", URL + "/v1/transfers", headers=headers, body=b"\x1f\x8b")
    with pytest.raises(ConnectorError, match="`gzip`-encoded"):
        STRIPE.parse(request)
