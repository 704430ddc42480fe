//! The executions page, `/_flow/ui`: one self-contained page (HTML, CSS and
//! script from `ui/`, embedded; nothing loaded from elsewhere) over the
//! admin API, and its sign-in.
//!
//! The browser never holds the admin token: it is typed once into the
//! sign-in form, which opens a session ([`super::session`]); the admin API
//! then accepts the session's cookie, and for state-changing requests its
//! CSRF token as well. Without `FLOW_ADMIN_TOKEN` the page only says how to
//! enable it.

use super::admin::Admin;
use super::session::{self, SignInRefused};
use super::*;

const DISABLED_HTML: &str = include_str!("ui/disabled.html");
const SIGN_IN_HTML: &str = include_str!("ui/signin.html");
const APP_HTML: &str = include_str!("ui/app.html");
const APP_CSS: &str = include_str!("ui/app.css");
const APP_JS: &str = include_str!("ui/app.js");
const FAVICON_SVG: &str = include_str!("ui/favicon.svg");

/// Where the sign-in form's error message goes in [`SIGN_IN_HTML`].
const ERROR_SLOT: &str = "<!--error-->";

/// A sign-in form is a few dozen bytes; anything much larger is not one.
const MAX_SIGN_IN_BODY: usize = 4 * 1024;

/// The page and its assets may come from this service only and may not be
/// framed: what keeps injected content inert and the page out of other
/// sites' frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `/_flow/ui` and what it uses.
pub(super) fn router() -> Router<Admin> {
    Router::new()
        .route("/_flow/ui", get(page))
        .route(
            "/_flow/ui/app.css",
            get(|| async { asset("text/css", APP_CSS) }),
        )
        .route(
            "/_flow/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/_flow/ui/graph.svg", get(graph))
        .route(
            "/_flow/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route(
            "/_flow/ui/session",
            get(session_csrf).post(sign_in).delete(sign_out),
        )
        .route("/_flow/ui/session/delete", post(sign_out))
}

/// An HTML answer with the page's security headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    protect(headers);
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    protect(resp.headers_mut());
    resp
}

fn protect(headers: &mut HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        // Not `no-referrer`: with it browsers send `Origin: null` on the
        // page's own form posts, which the Origin check must refuse.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

fn sign_in_page(admin: &Admin, status: StatusCode, error: &str) -> Response {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{error}</p>")
    };
    html(
        status,
        page_at(admin, &SIGN_IN_HTML.replace(ERROR_SLOT, &error)),
    )
}

/// A page whose links to `/_flow/…` start with the routes' prefix (an
/// instance's `/i/NAME`).
fn page_at(admin: &Admin, page: &str) -> String {
    if admin.prefix.is_empty() {
        page.to_string()
    } else {
        page.replace("\"/_flow/", &format!("\"{}/_flow/", admin.prefix))
    }
}

/// `GET /_flow/ui`: the page for a live session, else the sign-in form,
/// else (no admin token) how to enable it.
async fn page(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if admin.token.is_none() {
        return html(StatusCode::OK, page_at(&admin, DISABLED_HTML));
    }
    if admin.sessions.csrf_of(&headers).is_some() {
        html(StatusCode::OK, page_at(&admin, APP_HTML))
    } else {
        sign_in_page(&admin, StatusCode::OK, "")
    }
}

/// `GET /_flow/ui/graph.svg`: the drawing of the flows (it shows how the
/// integration works, so only to whoever may use the admin API).
async fn graph(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(resp) = super::admin::authorize(&admin, &headers, false) {
        return resp;
    }
    match admin.rt.integration().graph {
        "" => error_response(
            StatusCode::NOT_FOUND,
            "this binary has no drawing of its flows",
        ),
        svg => asset("image/svg+xml", svg),
    }
}

/// `GET /_flow/ui/session`: the session's CSRF token, for the page's
/// state-changing requests.
async fn session_csrf(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    match admin.sessions.csrf_of(&headers) {
        Some(csrf) => {
            let mut resp = Json(json!({ "csrf": csrf })).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        None => error_response(StatusCode::UNAUTHORIZED, "not signed in"),
    }
}

/// `POST /_flow/ui/session` (form field `token`): opens a session and
/// sends the browser back to the page with its cookie.
async fn sign_in(State(admin): State<Admin>, req: Request) -> Response {
    let Some(admin_token) = admin.token.as_deref() else {
        return html(StatusCode::FORBIDDEN, page_at(&admin, DISABLED_HTML));
    };
    let (parts, body) = req.into_parts();
    // A sign-in posted from another site would sign the browser into a
    // session the other site chose the token of.
    if session::cross_site(&parts.headers) {
        return sign_in_page(
            &admin,
            StatusCode::FORBIDDEN,
            "Sign-in from another site refused.",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = match read_body(&parts.headers, body, MAX_SIGN_IN_BODY, deadline).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let given = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    match admin.sessions.sign_in(admin_token, &given) {
        Ok(id) => {
            let secure = session::over_https(&parts.uri, &parts.headers);
            let mut resp = StatusCode::SEE_OTHER.into_response();
            let headers = resp.headers_mut();
            let page = format!("{}/_flow/ui", admin.prefix);
            headers.insert(
                header::LOCATION,
                HeaderValue::from_str(&page).unwrap_or(HeaderValue::from_static("/_flow/ui")),
            );
            headers.insert(
                header::SET_COOKIE,
                session::session_cookie_header(&id, secure, &admin.prefix),
            );
            tracing::info!("signed in to the executions page");
            resp
        }
        Err(SignInRefused::WrongToken) => {
            tracing::warn!("failed sign-in to the executions page: wrong token");
            tokio::time::sleep(session::FAILURE_DELAY).await;
            sign_in_page(&admin, StatusCode::UNAUTHORIZED, "Wrong token.")
        }
        Err(SignInRefused::TooManyAttempts) => {
            tracing::warn!("sign-in to the executions page refused: too many failed attempts");
            let mut resp = sign_in_page(
                &admin,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins: try again in a minute.",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            resp
        }
    }
}

/// `POST /_flow/ui/session/delete` (or `DELETE /_flow/ui/session`): ends
/// the session. A state-changing request like the others: the CSRF token
/// is required, so another site cannot sign the user out.
async fn sign_out(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(resp) = super::admin::authorize(&admin, &headers, true) {
        return resp;
    }
    admin.sessions.sign_out(&headers);
    let mut resp = Json(json!({ "signed_out": true })).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session::cleared_cookie_header(&admin.prefix),
    );
    resp
}
