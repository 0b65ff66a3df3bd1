"""Sign-in with GitHub: the OAuth web flow (authorize → code → access token → /user).

What is trusted: the login GitHub's API answers for the access token that GitHub's token endpoint
gave for our code (and our client secret), after the callback's `state` matched the one this
sign-in made. The access token is used once and never stored.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from factory.auth.oidc import SignInError


def authorize_url(web_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    query = {"client_id": client_id, "redirect_uri": redirect_uri, "state": state, "scope": "read:user"}
    return f"{web_url.rstrip('/')}/login/oauth/authorize?{urlencode(query)}"


async def login_for(
    http: httpx.AsyncClient,
    web_url: str,
    api_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
) -> str:
    """The GitHub login that signed in with this code."""
    r = await http.post(
        f"{web_url.rstrip('/')}/login/oauth/access_token",
        data={"client_id": client_id, "client_secret": client_secret, "code": code, "redirect_uri": redirect_uri},
        headers={"Accept": "application/json"},
    )
    token = r.json().get("access_token") if r.status_code == 200 else None
    if not isinstance(token, str) or not token:
        raise SignInError(f"GitHub gave no access token ({r.status_code})")
    user = await http.get(
        f"{api_url.rstrip('/')}/user", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    login = user.json().get("login") if user.status_code == 200 else None
    if not isinstance(login, str) or not login:
        raise SignInError(f"GitHub's /user answered {user.status_code} with no login")
    return login
