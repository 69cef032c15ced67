"""An order-fulfilment agent traced with the native client (``kriy_client``, standard library only).

The agent confirms a customer's order: it plans, reads the order (shared state, version 7),
checks stock, and captures the payment. The payment gateway times out on the first attempt and
the agent retries — but its retry helper forgets to say *why* it retried, so whoever reads the
trace later cannot tell a timeout from a decline. The retry succeeds and the run is green;
kriyplatform reports ``retry_reason_lost`` on the second ``payment.capture`` and judges the
trace ``defective``.

    export KRIY_ENDPOINT=http://127.0.0.1:8000
    export KRIY_API_KEY=kp_…
    python examples/native_agent.py
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from kriy_client import Client

AGENT = "order-agent"


class GatewayTimeout(Exception):
    pass


class PaymentGateway:
    """Times out once, then succeeds."""

    def __init__(self) -> None:
        self.calls = 0

    def capture(self, order_id: str, amount_eur: float) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.05)
            raise GatewayTimeout("payment gateway did not answer within 30 s")
        return {"capture_id": f"cap_{uuid.uuid4().hex[:10]}", "amount_eur": amount_eur}


def with_retries(kriy: Client, name: str, fn: Any, *args: Any, attempts: int = 3) -> Any:
    """Retry ``fn`` on GatewayTimeout, one ``tool`` span per attempt."""
    for attempt in range(attempts):
        try:
            with kriy.span(name, kind="tool", input={"args": list(args)}) as span:
                # The defect: the earlier attempt's failure is not passed on as the reason.
                span.retry(attempt)
                result = fn(*args)
                span.set_output(result)
                return result
        except GatewayTimeout:
            if attempt == attempts - 1:
                raise
    return None


def confirm_order(kriy: Client, order_id: str, session_id: str) -> str:
    """Returns the trace id."""
    gateway = PaymentGateway()
    with kriy.span(
        "confirm_order", agent=AGENT, kind="agent", session_id=session_id, input={"order": order_id}
    ) as root:
        root.constraints(["currency=EUR", "max_charge<=250"])
        with kriy.span("plan", kind="llm", attributes={"gen_ai.request.model": "gpt-4o"}) as plan:
            plan.set_output(["orders.get", "inventory.check", "payment.capture", "notify"])
            plan.set_attributes(
                {"gen_ai.usage.input_tokens": 412, "gen_ai.usage.output_tokens": 38}
            )

        with kriy.span("orders.get", kind="tool", input={"order_id": order_id}) as span:
            order = {"id": order_id, "items": [{"sku": "KB-87", "qty": 1}], "total_eur": 129.0}
            span.state(f"order:{order_id}", 7, "read").set_output(order)

        with kriy.span("inventory.check", kind="tool", input={"sku": "KB-87"}) as span:
            span.set_output({"sku": "KB-87", "available": 14})

        capture = with_retries(kriy, "payment.capture", gateway.capture, order_id, 129.0)

        with kriy.span("notify", kind="tool") as span:
            span.context(
                required=["customer.email", "order.id", "capture.id"],
                present=["customer.email", "order.id", "capture.id"],
            )
            span.set_input({"template": "order_confirmed", "capture": capture["capture_id"]})
            span.set_output({"sent": True})

        root.set_output({"status": "confirmed", "capture_id": capture["capture_id"]})
        return root.trace_id


def main() -> int:
    kriy = Client.from_env(agent=AGENT)
    if not kriy.enabled:
        print("Set KRIY_ENDPOINT (e.g. http://127.0.0.1:8000) and KRIY_API_KEY.", file=sys.stderr)
        return 2
    session_id = f"checkout-{uuid.uuid4().hex[:8]}"
    trace_id = confirm_order(kriy, "O-77120", session_id)
    kriy.close(timeout=30)  # flushes; also happens at interpreter exit
    stats = kriy.stats()
    print(f"{AGENT}: trace {trace_id} session {session_id} ({stats['sent']} spans sent)")
    return 0 if stats["failed"] == stats["rejected"] == stats["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
