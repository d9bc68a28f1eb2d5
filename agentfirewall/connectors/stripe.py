"""Stripe API (api.stripe.com): charges, refunds, payment intents, customers,
subscriptions, invoices, transfers, payouts, products, prices, balance, checkout,
setup intents, payment methods, Connect accounts, webhook endpoints, disputes, coupons.

Bodies are ``application/x-www-form-urlencoded``: ``amount``, ``currency``,
``destination`` and friends become parameters (amounts as ints). A body larger than the
64 KiB body limit is refused (an amount could hide past it), and so is a field sent twice
with different values. The connected account a request acts in becomes
``resource.account``: ``Stripe-Context``, which Stripe reads before ``Stripe-Account``, or
``Stripe-Account`` (Connect). A context may be a path of related accounts
(``acct_1/acct_1a``: platform, then its connected account); the account is its last one.
Refused: headers naming two accounts (either header sent twice with other values, a list
in one line, or the two naming different accounts), a context with an empty segment, a
``Stripe-Account`` holding a path, and either name written with ``_`` for ``-``.
"""

from __future__ import annotations

from agentfirewall.actions import Risk
from agentfirewall.connectors.routes import Route
from agentfirewall.connectors.table import BuildAlias, RouteConnector
from agentfirewall.errors import ConnectorError
from agentfirewall.jsonlimits import printable

__all__ = ["CONNECTOR", "StripeConnector"]

MONEY = ("amount:int", "currency")
REFUND = ("amount:int", "reason")


def _crud(
    resource: str,
    plural: str,
    *,
    create: tuple[Risk, tuple[str, ...]] | None = None,
    update: tuple[Risk, tuple[str, ...]] | None = None,
    delete: tuple[Risk, str] | None = None,
    search: bool = False,
) -> tuple[Route, ...]:
    """The usual five rows of a Stripe resource."""
    base = f"/v1/{plural}"
    name = f"stripe.{resource}"
    words = resource.replace("_", " ")
    rows = [
        Route("GET", base, f"{name}.list", "low", f"List {words}s"),
        Route("GET", base + "/{id}", f"{name}.get", "low", f"Get a {words}"),
    ]
    if search:
        rows.append(Route("GET", base + "/search", f"{name}.search", "low", f"Search {words}s"))
    if create:
        rows.append(
            Route("POST", base, f"{name}.create", create[0], f"Create a {words}", create[1])
        )
    if update:
        rows.append(
            Route(
                "POST", base + "/{id}", f"{name}.update", update[0], f"Update a {words}", update[1]
            )
        )
    if delete:
        rows.append(
            Route(
                "DELETE",
                base + "/{id}",
                f"{name}.{delete[1]}",
                delete[0],
                f"{delete[1].capitalize()} a {words}",
            )
        )
    return tuple(rows)


def _verb(
    plural: str, verb: str, action: str, risk: Risk, what: str, params: tuple[str, ...] = ()
) -> Route:
    return Route("POST", f"/v1/{plural}/{{id}}/{verb}", action, risk, what, params)


_ROUTES = (
    *_crud(
        "charge",
        "charges",
        create=("medium", (*MONEY, "customer", "source")),
        update=("low", ()),
        search=True,
    ),
    _verb(
        "charges", "capture", "stripe.charge.capture", "medium", "Capture a charge", ("amount:int",)
    ),
    *_crud(
        "refund",
        "refunds",
        create=("high", ("amount:int", "charge", "payment_intent", "reason")),
        update=("low", ()),
    ),
    _verb("refunds", "cancel", "stripe.refund.cancel", "low", "Cancel a refund"),
    # the same refund, spelled on the charge or payment intent it refunds
    Route(
        "POST",
        "/v1/charges/{charge}/refunds",
        "stripe.refund.create",
        "high",
        "Refund a charge",
        REFUND,
    ),
    Route(
        "POST",
        "/v1/charges/{charge}/refund",
        "stripe.refund.create",
        "high",
        "Refund a charge (legacy)",
        REFUND,
    ),
    Route(
        "POST",
        "/v1/payment_intents/{payment_intent}/refund",
        "stripe.refund.create",
        "high",
        "Refund a payment intent",
        REFUND,
    ),
    *_crud(
        "payment_intent",
        "payment_intents",
        create=("medium", (*MONEY, "customer", "confirm")),
        update=("medium", (*MONEY,)),
        search=True,
    ),
    _verb(
        "payment_intents",
        "confirm",
        "stripe.payment_intent.confirm",
        "medium",
        "Confirm a payment intent",
    ),
    _verb(
        "payment_intents",
        "capture",
        "stripe.payment_intent.capture",
        "medium",
        "Capture a payment intent",
        ("amount_to_capture:int",),
    ),
    _verb(
        "payment_intents",
        "cancel",
        "stripe.payment_intent.cancel",
        "low",
        "Cancel a payment intent",
    ),
    *_crud(
        "customer",
        "customers",
        create=("low", ("email",)),
        update=("low", ("email",)),
        delete=("high", "delete"),
        search=True,
    ),
    *_crud(
        "subscription",
        "subscriptions",
        create=("medium", ("customer",)),
        update=("medium", ("cancel_at_period_end",)),
        delete=("medium", "cancel"),
    ),
    *_crud(
        "invoice",
        "invoices",
        create=("low", ("customer",)),
        update=("low", ()),
        delete=("medium", "delete"),
    ),
    _verb("invoices", "finalize", "stripe.invoice.finalize", "medium", "Finalize an invoice"),
    _verb("invoices", "pay", "stripe.invoice.pay", "medium", "Pay an invoice"),
    _verb("invoices", "send", "stripe.invoice.send", "medium", "Send an invoice"),
    _verb("invoices", "void", "stripe.invoice.void", "medium", "Void an invoice"),
    *_crud(
        "transfer",
        "transfers",
        create=("high", (*MONEY, "destination", "source_transaction")),
        update=("low", ()),
    ),
    _verb(
        "transfers",
        "reversals",
        "stripe.transfer.reverse",
        "medium",
        "Reverse a transfer",
        ("amount:int",),
    ),
    *_crud(
        "payout", "payouts", create=("high", (*MONEY, "destination", "method")), update=("low", ())
    ),
    _verb("payouts", "cancel", "stripe.payout.cancel", "low", "Cancel a payout"),
    *_crud(
        "product",
        "products",
        create=("low", ("name",)),
        update=("low", ("active",)),
        delete=("medium", "delete"),
        search=True,
    ),
    *_crud(
        "price",
        "prices",
        create=("low", ("unit_amount:int", "currency", "product")),
        update=("low", ("active",)),
    ),
    Route("GET", "/v1/balance", "stripe.balance.get", "low", "Get the balance"),
    Route(
        "GET",
        "/v1/balance_transactions",
        "stripe.balance_transaction.list",
        "low",
        "List balance transactions",
    ),
    Route(
        "GET",
        "/v1/balance_transactions/{id}",
        "stripe.balance_transaction.get",
        "low",
        "Get a balance transaction",
    ),
    *_crud("checkout_session", "checkout/sessions", create=("low", ("mode", "customer"))),
    _verb(
        "checkout/sessions",
        "expire",
        "stripe.checkout_session.expire",
        "low",
        "Expire a checkout session",
    ),
    *_crud("setup_intent", "setup_intents", create=("low", ("customer",)), update=("low", ())),
    _verb(
        "setup_intents", "confirm", "stripe.setup_intent.confirm", "low", "Confirm a setup intent"
    ),
    _verb("setup_intents", "cancel", "stripe.setup_intent.cancel", "low", "Cancel a setup intent"),
    *_crud("payment_method", "payment_methods", create=("low", ("type",)), update=("low", ())),
    _verb(
        "payment_methods",
        "attach",
        "stripe.payment_method.attach",
        "medium",
        "Attach a payment method to a customer",
        ("customer",),
    ),
    _verb(
        "payment_methods",
        "detach",
        "stripe.payment_method.detach",
        "medium",
        "Detach a payment method",
    ),
    *_crud(
        "account",
        "accounts",
        create=("high", ("type", "country", "email")),
        update=("medium", ()),
        delete=("high", "delete"),
    ),
    *_crud(
        "webhook_endpoint",
        "webhook_endpoints",
        create=("high", ("url",)),
        update=("high", ("url",)),
        delete=("high", "delete"),
    ),
    *_crud("dispute", "disputes", update=("medium", ())),
    _verb("disputes", "close", "stripe.dispute.close", "high", "Accept a dispute (lose it)"),
    *_crud(
        "coupon",
        "coupons",
        create=("medium", ("percent_off", "amount_off:int", "currency")),
        delete=("medium", "delete"),
    ),
    Route("GET", "/v1/events", "stripe.event.list", "low", "List events"),
    Route("GET", "/v1/events/{id}", "stripe.event.get", "low", "Get an event"),
)


class StripeConnector(RouteConnector):
    """The Stripe table, and the account a ``Stripe-Context`` path names."""

    def header_account(self, name: str, value: str) -> str:
        """The account acted in: a context's last account (``acct_1/acct_1a`` is
        ``acct_1a``, from the key of ``acct_1``'s organization; a policy on ``acct_1a``
        holds however the path to it is written). ``Stripe-Account`` names one account."""
        if name == "stripe-account":
            if "/" in value:
                raise ConnectorError(
                    f"refused `Stripe-Account: {printable(value, 100)}`: names one account, "
                    "a path of accounts goes in `Stripe-Context`",
                    connector=self.name,
                )
            return value
        *_, last = segments = [segment.strip() for segment in value.split("/")]
        if "" in segments:
            raise ConnectorError(
                f"refused `Stripe-Context: {printable(value, 100)}`: an empty account",
                connector=self.name,
            )
        return last


CONNECTOR = StripeConnector(
    name="stripe",
    description="Stripe API (form-encoded bodies)",
    routes=_ROUTES,
    default_domains=("api.stripe.com",),
    base_url="https://api.stripe.com",
    body_format="form",
    body_limit=64 * 1024,
    truncated="error",
    account_headers=("stripe-context", "stripe-account"),
    build_aliases={"payment.transfer.initiate": BuildAlias("stripe.transfer.create")},
)
CONNECTOR.notes = __doc__ or ""
#: Which account acts and how the API reads the request: bound to an approval.
CONNECTOR.bound_headers = ("stripe-account", "stripe-context", "stripe-version")
