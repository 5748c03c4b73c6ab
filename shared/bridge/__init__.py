"""The sign-in bridge: this app's own OAuth 2.1 front door to Entra, for clients Entra cannot serve directly.

MCP clients send RFC 8707 ``resource`` (the server's URL), which Entra refuses unless that URL is an
identifier URI of the app registration, and that needs a verified custom domain. With the bridge on, the
Protected Resource Metadata names this app's origin as the authorization server; clients find the RFC 8414
metadata here, identify themselves with a client ID metadata document or dynamic registration, and the
bridge forwards ``/oauth/authorize`` and ``/oauth/token`` to Entra with its own public client ID and without
``resource``, after the user has consented to that client. It stores nothing and mints no codes or tokens:
Entra returns the code straight to the client, and tokens are Entra's own. Knows nothing of MCP.
"""
