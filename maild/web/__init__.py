"""The web channel (SPEC §10): a request form and each ticket's status page, served inside
`maild run` beside the SMTP listener.

This is a face, like the command line: it reads tickets through the read models
(`maild.views`) and hands every submission — a new request or a message from the status page —
to the same durable intake as mail (`store`, given by the daemon: the spool or `inbound`), as
a message of its own. The worker threads and acknowledges it like any mail; the page answers
only once that is done.
"""

from maild.web.pages import make_app
from maild.web.server import WebServer

__all__ = ["WebServer", "make_app"]
