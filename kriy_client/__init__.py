"""kriy_client: send agent spans to kriyplatform (native REST format, ``spans.md``).

Standard library only. The client never raises into the agent: every error is logged through
``logging.getLogger("kriy_client")`` and counted in ``client.stats()``.

    from kriy_client import Client

    kriy = Client("https://kriy.example.com", "kp_…")
    with kriy.span("handle_ticket", agent="support-agent", kind="agent", session_id="s-1"):
        with kriy.span("crm.lookup", kind="tool", input={"customer": 42}) as s:
            s.set_output(record).mark_partial()
    kriy.close()  # also runs at interpreter exit
"""

from kriy_client._client import Client
from kriy_client._span import KINDS, Span, current_span
from kriy_client._transport import parse_retry_after
from kriy_client._version import __version__

__all__ = ["KINDS", "Client", "Span", "__version__", "current_span", "parse_retry_after"]
