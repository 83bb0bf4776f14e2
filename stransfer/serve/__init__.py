"""`stransfer serve`: a local web page and an HTTP API over the Python API (stransfer.api), the one place that runs
engines. Needs the `serve` extra (FastAPI, uvicorn, python-multipart); settings.py alone imports without it.

    settings  ServeConfig (limits, queue), the loopback/token rule     work      the bounded queue of engine runs
    catalogue the models and styles on offer, their thumbnails         uploads   images from a request, within limits
    runs      checked requests, the cache of loaded Stylizers           jobs      slow runs as jobs with progress
    guard     ASGI: token, host, body size, every response's deadline  app       routes, JSON errors; server: uvicorn
"""
