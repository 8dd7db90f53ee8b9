"""The operations the routes ask for, one module per service, with no web framework in
sight. Each service is built once by ``runtime.py`` with only the collaborators it uses,
and every call names its caller (a ``Principal``)."""
