"""Local stand-ins for the providers' OAuth and API endpoints, in their documented shapes.

One Starlette app, one path prefix per provider, listening on 127.0.0.1 (granian,
embedded, in a thread) so the production code talks HTTP to it unchanged, pointed
here with OAUTH_ENDPOINT_OVERRIDES:

- /slack: oauth/v2/authorize (user_scope, comma-separated), api/oauth.v2.access (the
  user token inside `authed_user`; errors as HTTP 200 {"ok": false}), api/auth.test,
  api/auth.revoke.
- /notion: v1/oauth/authorize (owner=user), v1/oauth/token (HTTP Basic required, else
  401; the owner and workspace in the answer; refresh tokens rotate), v1/oauth/revoke.
- /google: o/oauth2/v2/auth (the callback carries `iss`), token (a refresh answers
  without a refresh token; the old one stays valid), v1/userinfo, revoke.
- /github: login/oauth/authorize, login/oauth/access_token (PKCE S256 checked; errors
  as HTTP 200 {"error": ...}; each refresh returns a new refresh token and ends the
  old one and its access token), api/user, api/applications/{client_id}/grant.
- /dropbox: oauth2/authorize (token_access_type=offline gives a refresh token), oauth2/
  token (PKCE), 2/users/get_current_account, 2/auth/token/revoke.
- /anthropic/v1/models and /openai/v1/models: accept exactly one key each.
- the APIs the chat tools call (Slack, Gmail, Calendar, Notion, GitHub): see
  tests/provider_api_servers.py; scripted through `state.api`.

The authorization endpoints consent at once on behalf of the account in
`state.consent[provider]` (or deny, or grant fewer scopes, or name another issuer),
answering 302 to the redirect URI as a provider's consent page would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.local_server import BackgroundServer
from tests.provider_api_servers import ApiState, api_routes

GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass
class Account:
    id: str
    name: str
    email: str
    team_id: str = "T0TEAM1"
    team_name: str = "Acme"


@dataclass
class Consent:
    account: Account
    # None: everything asked for. Otherwise exactly these.
    granted_scopes: list[str] | None = None
    deny: bool = False
    # Google: the `iss` sent back on the callback (None: none at all).
    issuer: str | None = GOOGLE_ISSUER


@dataclass
class Code:
    provider: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    account: Account
    challenge: str | None
    offline: bool
    created: float = field(default_factory=time.monotonic)


@dataclass
class Token:
    provider: str
    client_id: str
    account: Account
    scopes: list[str]
    refresh_token: str | None = None


@dataclass
class PeerState:
    client_id: str
    client_secret: str
    app_url: str
    anthropic_key: str
    openai_key: str
    consent: dict[str, Consent] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access_tokens: dict[str, Token] = field(default_factory=dict)
    refresh_tokens: dict[str, Token] = field(default_factory=dict)
    revoked: list[tuple[str, str]] = field(default_factory=list)
    # Every token endpoint request: provider, grant type, how the client authenticated.
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    # Slack apps with token rotation turned on get expiring user tokens and refresh tokens.
    slack_rotation: bool = False
    # The service APIs behind the chat tools: their data, requests and scripted failures.
    api: ApiState = field(default_factory=ApiState)

    def redirect_uri(self, provider: str) -> str:
        return f"{self.app_url}/connections/{provider}/callback"

    def issue(self, provider: str, code: Code | Token, *, refresh: bool, prefix: str) -> dict:
        access = f"{prefix}{secrets.token_urlsafe(24)}"
        token = Token(
            provider=provider,
            client_id=code.client_id,
            account=code.account,
            scopes=list(code.scopes),
        )
        self.access_tokens[access] = token
        result = {"access_token": access}
        if refresh:
            refresh_token = f"r-{prefix}{secrets.token_urlsafe(24)}"
            token.refresh_token = refresh_token
            self.refresh_tokens[refresh_token] = Token(
                provider=provider,
                client_id=code.client_id,
                account=code.account,
                scopes=list(code.scopes),
            )
            result["refresh_token"] = refresh_token
        return result

    def bearer_account(self, request: Request, provider: str) -> Token | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        token = self.access_tokens.get(header[7:])
        return token if token is not None and token.provider == provider else None

    def revoke_account(self, provider: str, account_id: str) -> None:
        for store in (self.access_tokens, self.refresh_tokens):
            for value, token in list(store.items()):
                if token.provider == provider and token.account.id == account_id:
                    del store[value]


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        user, password = unquote(user), unquote(password)
    except ValueError:
        return None
    return user, password


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        return {key: str(value) for key, value in json.loads(body or b"{}").items()}
    return {key: str(value) for key, value in (await request.form()).items()}


def _client_of(request: Request, form: dict[str, str]) -> tuple[str | None, str | None, str]:
    basic = _basic(request)
    if basic is not None:
        return basic[0], basic[1], "client_secret_basic"
    return form.get("client_id"), form.get("client_secret"), "client_secret_post"


def build_app(state: PeerState) -> Starlette:
    def consent_redirect(request: Request, provider: str, *, scope_param: str, sep: str):
        query = dict(request.query_params)
        state.authorize_requests.append({"provider": provider, **query})
        redirect_uri = query.get("redirect_uri")
        if query.get("client_id") != state.client_id:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if redirect_uri != state.redirect_uri(provider):
            return JSONResponse({"error": "redirect_uri_mismatch"}, status_code=400)
        if query.get("response_type") != "code":
            return JSONResponse({"error": "unsupported_response_type"}, status_code=400)
        plan = state.consent[provider]
        back: dict[str, str] = {}
        if "state" in query:
            back["state"] = query["state"]
        if provider == "google" and plan.issuer is not None:
            back["iss"] = plan.issuer
        if plan.deny:
            back["error"] = "access_denied"
            if provider == "google":
                back["error_description"] = "<script>alert('the user said no')</script>"
            return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)
        asked = [s for s in query.get(scope_param, "").split(sep) if s] if scope_param else []
        granted = plan.granted_scopes if plan.granted_scopes is not None else asked
        challenge = query.get("code_challenge")
        if challenge and query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        state.codes[code] = Code(
            provider=provider,
            client_id=state.client_id,
            redirect_uri=redirect_uri,
            scopes=granted,
            account=plan.account,
            challenge=challenge,
            offline=query.get("token_access_type") == "offline"
            or query.get("access_type") == "offline",
        )
        back["code"] = code
        if provider == "google":
            back["scope"] = " ".join(granted)
        return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)

    def take_code(provider: str, form: dict[str, str], client_id: str | None) -> Code | str:
        code = state.codes.pop(form.get("code", ""), None)
        if code is None or code.provider != provider or code.client_id != client_id:
            return "invalid_grant"
        if time.monotonic() - code.created > 600:
            return "invalid_grant"
        if form.get("redirect_uri") != code.redirect_uri:
            return "invalid_grant"
        if code.challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier or _s256(verifier) != code.challenge:
                return "invalid_grant"
        return code

    async def token_request(request: Request, provider: str) -> tuple[dict, str | None, bool]:
        form = await _form(request)
        client_id, client_secret, method = _client_of(request, form)
        state.token_requests.append(
            {
                "provider": provider,
                "grant_type": form.get("grant_type"),
                "auth": method,
                "has_verifier": "code_verifier" in form,
                "content_type": request.headers.get("content-type", ""),
            }
        )
        good = client_id == state.client_id and client_secret == state.client_secret
        return form, client_id, good

    # -- Slack -------------------------------------------------------------------------

    async def slack_authorize(request: Request) -> Response:
        if "scope" in request.query_params:
            # Carmenta must never ask for bot scopes.
            return JSONResponse({"error": "bot_scopes_requested"}, status_code=400)
        return consent_redirect(request, "slack", scope_param="user_scope", sep=",")

    async def slack_access(request: Request) -> Response:
        form, client_id, good = await token_request(request, "slack")
        if not good:
            return JSONResponse({"ok": False, "error": "invalid_client_id"})
        if form.get("grant_type") == "refresh_token":
            old = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if old is None:
                return JSONResponse({"ok": False, "error": "invalid_refresh_token"})
            issued = state.issue("slack", old, refresh=True, prefix="xoxe.xoxp-")
            return JSONResponse(
                {
                    "ok": True,
                    "token_type": "user",
                    "scope": ",".join(old.scopes),
                    "expires_in": 43200,
                    "user_id": old.account.id,
                    "team": {"id": old.account.team_id, "name": old.account.team_name},
                    **issued,
                }
            )
        code = take_code("slack", form, client_id)
        if isinstance(code, str):
            return JSONResponse({"ok": False, "error": "invalid_code"})
        rotating = state.slack_rotation
        issued = state.issue(
            "slack", code, refresh=rotating, prefix="xoxe.xoxp-" if rotating else "xoxp-"
        )
        authed_user: dict[str, Any] = {
            "id": code.account.id,
            "scope": ",".join(code.scopes),
            "access_token": issued["access_token"],
            "token_type": "user",
        }
        if rotating:
            authed_user.update(refresh_token=issued["refresh_token"], expires_in=43200)
        return JSONResponse(
            {
                "ok": True,
                "app_id": "A0APP1",
                "authed_user": authed_user,
                "team": {"id": code.account.team_id, "name": code.account.team_name},
                "enterprise": None,
                "is_enterprise_install": False,
            }
        )

    async def slack_auth_test(request: Request) -> Response:
        token = state.bearer_account(request, "slack")
        if token is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        account = token.account
        return JSONResponse(
            {
                "ok": True,
                "url": f"https://{account.team_name.lower()}.slack.com/",
                "team": account.team_name,
                "user": account.name,
                "team_id": account.team_id,
                "user_id": account.id,
            }
        )

    async def slack_revoke(request: Request) -> Response:
        token = state.bearer_account(request, "slack")
        if token is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        state.revoked.append(("slack", request.headers["authorization"][7:]))
        state.revoke_account("slack", token.account.id)
        return JSONResponse({"ok": True, "revoked": True})

    # -- Notion ------------------------------------------------------------------------

    async def notion_authorize(request: Request) -> Response:
        if request.query_params.get("owner") != "user":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return consent_redirect(request, "notion", scope_param="", sep=" ")

    def notion_answer(token: Token, issued: dict) -> dict:
        account = token.account
        return {
            **issued,
            "token_type": "bearer",
            "bot_id": "b0b0b0b0-0000-4000-8000-000000000001",
            "workspace_id": account.team_id,
            "workspace_name": account.team_name,
            "workspace_icon": None,
            "owner": {
                "type": "user",
                "user": {
                    "object": "user",
                    "id": account.id,
                    "name": account.name,
                    "avatar_url": None,
                    "type": "person",
                    "person": {"email": account.email},
                },
            },
            "duplicated_template_id": None,
            "request_id": secrets.token_hex(8),
        }

    async def notion_token(request: Request) -> Response:
        form, client_id, good = await token_request(request, "notion")
        if _basic(request) is None or not good:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Basic auth required"},
                status_code=401,
            )
        if form.get("grant_type") == "refresh_token":
            old = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if old is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(
                notion_answer(old, state.issue("notion", old, refresh=True, prefix="ntn_"))
            )
        code = take_code("notion", form, client_id)
        if isinstance(code, str):
            return JSONResponse({"error": code}, status_code=400)
        issued = state.issue("notion", code, refresh=True, prefix="ntn_")
        token = state.access_tokens[issued["access_token"]]
        return JSONResponse(notion_answer(token, issued))

    async def notion_revoke(request: Request) -> Response:
        basic = _basic(request)
        if basic != (state.client_id, state.client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token_value = json.loads(await request.body() or b"{}").get("token", "")
        token = state.access_tokens.get(token_value)
        if token is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        state.revoked.append(("notion", token_value))
        state.revoke_account("notion", token.account.id)
        return JSONResponse({"request_id": secrets.token_hex(8)})

    # -- Google ------------------------------------------------------------------------

    async def google_authorize(request: Request) -> Response:
        return consent_redirect(request, "google", scope_param="scope", sep=" ")

    async def google_token(request: Request) -> Response:
        form, client_id, good = await token_request(request, "google")
        if not good:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "refresh_token":
            old = state.refresh_tokens.get(form.get("refresh_token", ""))
            if old is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            # Google keeps the refresh token and sends none back.
            issued = state.issue("google", old, refresh=False, prefix="ya29.")
            return JSONResponse(
                {
                    **issued,
                    "expires_in": 3599,
                    "scope": " ".join(old.scopes),
                    "token_type": "Bearer",
                }
            )
        code = take_code("google", form, client_id)
        if isinstance(code, str):
            return JSONResponse(
                {"error": code, "error_description": "Bad Request"}, status_code=400
            )
        issued = state.issue("google", code, refresh=code.offline, prefix="ya29.")
        return JSONResponse(
            {
                **issued,
                "expires_in": 3599,
                "scope": " ".join(code.scopes),
                "token_type": "Bearer",
                "id_token": "header.payload.signature",
            }
        )

    async def google_userinfo(request: Request) -> Response:
        token = state.bearer_account(request, "google")
        if token is None:
            return JSONResponse({"error": "invalid_request"}, status_code=401)
        account = token.account
        return JSONResponse(
            {
                "sub": account.id,
                "name": account.name,
                "email": account.email,
                "email_verified": True,
            }
        )

    async def google_revoke(request: Request) -> Response:
        value = (await request.form()).get("token", "")
        token = state.access_tokens.get(str(value)) or state.refresh_tokens.get(str(value))
        if token is None:
            return JSONResponse({"error": "invalid_token"}, status_code=400)
        state.revoked.append(("google", str(value)))
        state.revoke_account("google", token.account.id)
        return JSONResponse({})

    # -- GitHub ------------------------------------------------------------------------

    async def github_authorize(request: Request) -> Response:
        return consent_redirect(request, "github", scope_param="", sep=" ")

    def github_error(error: str) -> Response:
        # GitHub answers OAuth errors with HTTP 200.
        return JSONResponse(
            {
                "error": error,
                "error_description": "The code passed is incorrect or expired.",
                "error_uri": "https://docs.github.com/apps/troubleshooting",
            }
        )

    async def github_token(request: Request) -> Response:
        form, client_id, good = await token_request(request, "github")
        if not good:
            return github_error("incorrect_client_credentials")
        if form.get("grant_type") == "refresh_token":
            old = state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if old is None:
                return github_error("bad_refresh_token")
            # The old access token ends with the refresh.
            for value, token in list(state.access_tokens.items()):
                if token.refresh_token == form.get("refresh_token"):
                    del state.access_tokens[value]
            issued = state.issue("github", old, refresh=True, prefix="ghu_")
            return JSONResponse(
                {
                    **issued,
                    "expires_in": 28800,
                    "refresh_token_expires_in": 15897600,
                    "scope": "",
                    "token_type": "bearer",
                }
            )
        code = take_code("github", form, client_id)
        if isinstance(code, str):
            return github_error("bad_verification_code")
        issued = state.issue("github", code, refresh=True, prefix="ghu_")
        return JSONResponse(
            {
                **issued,
                "expires_in": 28800,
                "refresh_token_expires_in": 15897600,
                "scope": "",
                "token_type": "bearer",
            }
        )

    async def github_user(request: Request) -> Response:
        token = state.bearer_account(request, "github")
        if token is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        account = token.account
        return JSONResponse(
            {"login": account.name, "id": int(account.id), "name": account.name, "type": "User"}
        )

    async def github_grant(request: Request) -> Response:
        if _basic(request) != (state.client_id, state.client_secret):
            return JSONResponse({"message": "Requires authentication"}, status_code=401)
        if request.path_params["client_id"] != state.client_id:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        value = json.loads(await request.body() or b"{}").get("access_token", "")
        token = state.access_tokens.get(value)
        if token is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        state.revoked.append(("github", value))
        state.revoke_account("github", token.account.id)
        return Response(status_code=204)

    # -- Dropbox -----------------------------------------------------------------------

    async def dropbox_authorize(request: Request) -> Response:
        return consent_redirect(request, "dropbox", scope_param="scope", sep=" ")

    async def dropbox_token(request: Request) -> Response:
        form, client_id, good = await token_request(request, "dropbox")
        if not good:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if form.get("grant_type") == "refresh_token":
            old = state.refresh_tokens.get(form.get("refresh_token", ""))
            if old is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            issued = state.issue("dropbox", old, refresh=False, prefix="sl.")
            return JSONResponse({**issued, "token_type": "bearer", "expires_in": 14400})
        code = take_code("dropbox", form, client_id)
        if isinstance(code, str):
            return JSONResponse(
                {"error": code, "error_description": "code doesn't exist or has expired"},
                status_code=400,
            )
        issued = state.issue("dropbox", code, refresh=code.offline, prefix="sl.")
        return JSONResponse(
            {
                **issued,
                "token_type": "bearer",
                "expires_in": 14400,
                "scope": " ".join(code.scopes),
                "account_id": code.account.id,
                "uid": "12345",
            }
        )

    async def dropbox_account(request: Request) -> Response:
        token = state.bearer_account(request, "dropbox")
        if token is None:
            return JSONResponse({"error_summary": "invalid_access_token/"}, status_code=401)
        body = await request.body()
        if body not in (b"", b"null"):
            return Response("Error in call to API function: takes no arguments", status_code=400)
        account = token.account
        return JSONResponse(
            {
                "account_id": account.id,
                "name": {"display_name": account.name, "given_name": account.name},
                "email": account.email,
                "email_verified": True,
                "disabled": False,
            }
        )

    async def dropbox_revoke(request: Request) -> Response:
        token = state.bearer_account(request, "dropbox")
        if token is None:
            return JSONResponse({"error_summary": "invalid_access_token/"}, status_code=401)
        state.revoked.append(("dropbox", request.headers["authorization"][7:]))
        state.revoke_account("dropbox", token.account.id)
        return JSONResponse(None)

    # -- API-key providers -------------------------------------------------------------

    async def anthropic_models(request: Request) -> Response:
        if request.headers.get("x-api-key") != state.anthropic_key:
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                },
                status_code=401,
            )
        if not request.headers.get("anthropic-version"):
            return JSONResponse({"type": "error"}, status_code=400)
        return JSONResponse(
            {
                "data": [{"type": "model", "id": "claude-test-1", "display_name": "Claude Test"}],
                "has_more": False,
                "first_id": "claude-test-1",
                "last_id": "claude-test-1",
            }
        )

    async def openai_models(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {state.openai_key}":
            return JSONResponse(
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        return JSONResponse(
            {"object": "list", "data": [{"id": "gpt-test", "object": "model", "owned_by": "x"}]}
        )

    return Starlette(
        routes=[
            Route("/slack/oauth/v2/authorize", slack_authorize),
            Route("/slack/api/oauth.v2.access", slack_access, methods=["POST"]),
            Route("/slack/api/auth.test", slack_auth_test, methods=["GET", "POST"]),
            Route("/slack/api/auth.revoke", slack_revoke, methods=["GET", "POST"]),
            Route("/notion/v1/oauth/authorize", notion_authorize),
            Route("/notion/v1/oauth/token", notion_token, methods=["POST"]),
            Route("/notion/v1/oauth/revoke", notion_revoke, methods=["POST"]),
            Route("/google/o/oauth2/v2/auth", google_authorize),
            Route("/google/token", google_token, methods=["POST"]),
            Route("/google/v1/userinfo", google_userinfo),
            Route("/google/revoke", google_revoke, methods=["POST"]),
            Route("/github/login/oauth/authorize", github_authorize),
            Route("/github/login/oauth/access_token", github_token, methods=["POST"]),
            Route("/github/api/user", github_user),
            Route("/github/api/applications/{client_id}/grant", github_grant, methods=["DELETE"]),
            Route("/dropbox/oauth2/authorize", dropbox_authorize),
            Route("/dropbox/oauth2/token", dropbox_token, methods=["POST"]),
            Route("/dropbox/2/users/get_current_account", dropbox_account, methods=["POST"]),
            Route("/dropbox/2/auth/token/revoke", dropbox_revoke, methods=["POST"]),
            Route("/anthropic/v1/models", anthropic_models),
            Route("/openai/v1/models", openai_models),
            *api_routes(state),
        ]
    )


def overrides_for(url: str) -> dict[str, dict[str, str]]:
    """OAUTH_ENDPOINT_OVERRIDES pointing every provider at the stand-in at `url`."""
    return {
        "slack": {
            "authorize_url": f"{url}/slack/oauth/v2/authorize",
            "token_url": f"{url}/slack/api/oauth.v2.access",
            "revoke_url": f"{url}/slack/api/auth.revoke",
            "api_base": f"{url}/slack/api",
        },
        "notion": {
            "authorize_url": f"{url}/notion/v1/oauth/authorize",
            "token_url": f"{url}/notion/v1/oauth/token",
            "revoke_url": f"{url}/notion/v1/oauth/revoke",
            "api_base": f"{url}/notion/v1",
        },
        "google": {
            "authorize_url": f"{url}/google/o/oauth2/v2/auth",
            "token_url": f"{url}/google/token",
            "revoke_url": f"{url}/google/revoke",
            "api_base": f"{url}/google",
        },
        "github": {
            "authorize_url": f"{url}/github/login/oauth/authorize",
            "token_url": f"{url}/github/login/oauth/access_token",
            "api_base": f"{url}/github/api",
        },
        "dropbox": {
            "authorize_url": f"{url}/dropbox/oauth2/authorize",
            "token_url": f"{url}/dropbox/oauth2/token",
            "revoke_url": f"{url}/dropbox/2/auth/token/revoke",
            "api_base": f"{url}/dropbox",
        },
        "anthropic": {"api_base": f"{url}/anthropic"},
    }


class ProviderPeer:
    """The stand-ins, listening on 127.0.0.1 in a background thread."""

    def __init__(self, *, app_url: str) -> None:
        self.state = PeerState(
            client_id=f"client-{secrets.token_hex(4)}",
            client_secret=secrets.token_urlsafe(24),
            app_url=app_url,
            anthropic_key="sk-ant-api03-" + secrets.token_urlsafe(32),
            openai_key="sk-proj-" + secrets.token_urlsafe(32),
        )
        self._server = BackgroundServer(
            build_app(self.state), name="provider-peer", probe_path="/openai/v1/models"
        )
        self.port = self._server.port
        self.url = self._server.url

    def start(self) -> ProviderPeer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
