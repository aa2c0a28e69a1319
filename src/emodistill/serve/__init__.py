"""``emodistill serve``: an HTTP service (FastAPI on uvicorn) and a web page around one checkpoint.

Layers inside: :mod:`~emodistill.serve.settings` (the options), :mod:`~emodistill.serve.guard` (the ASGI
middleware that checks the token, the upload size and the queue before a body is read),
:mod:`~emodistill.serve.jobs` (the bounded pool the model runs in), :mod:`~emodistill.serve.uploads`
(private temporary files), :mod:`~emodistill.serve.schemas` (the documented responses) and
:mod:`~emodistill.serve.app` (the endpoints). The page is ``static/``.
"""
