"""Calls to other APIs as the signed-in user: on-behalf-of tokens (azure-identity, imported only when
on-behalf-of is configured), a small Microsoft Graph client, the consent landing page and retry rules."""
