"""The Functions/HTTP edge: plain request/response values (``messages``), the ``azure.functions``
adapter (``functions``) and the request pipeline that puts host/origin checks, bearer authentication
and the engine together (``pipeline``)."""
