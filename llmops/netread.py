"""daphne's request bodies handed to Django as they arrived, not parsed by twisted first.

twisted's HTTP request parses every POST body that says it is a form (urlencoded or
multipart) into `request.args`, with the standard library's email parser, before daphne
sees the request. daphne never reads `args`: it passes the raw body to Django, which parses
it again. The first parse was pure cost (the Content-Type header alone, read through an
email message object, was ~2% of a realtime request's CPU; a batch file's multipart upload
was parsed twice, its file copied into `args` for as long as the request lived), and a body
twisted could not parse (a multipart without a boundary) was answered with a bare 400 and a
dropped connection, not the API's own error: Django's parser, the one that counts, never
saw it.

Installed by llmops.asgi in daphne's process only; elsewhere nothing changes.
"""

from __future__ import annotations

import sys


def install() -> bool:
    """Turn twisted's form parsing off for daphne's requests. False when daphne's HTTP
    protocol is not loaded in this process (not daphne)."""
    module = sys.modules.get("daphne.http_protocol")
    if module is None:
        return False
    request_class = module.WebRequest
    if getattr(request_class, "_llmops_unparsed", False):
        return True
    twisted_init = request_class.__init__

    def __init__(self, *args, **kwargs) -> None:
        twisted_init(self, *args, **kwargs)
        # twisted.web.http.Request's own switch (its `parsePOSTFormSubmission` argument,
        # which daphne does not pass).
        self._parsePOSTFormSubmission = False

    request_class.__init__ = __init__
    request_class._llmops_unparsed = True
    return True
