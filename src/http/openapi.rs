//! `GET /openapi.json`: the OpenAPI 3.1 document of the JSON API. Paths, parameters, bodies and
//! success responses come from each handler's `#[utoipa::path]` and the types it reads and
//! writes; the operations are the routes `configure` registers (`json_api!`); [`Contract`] adds
//! what every route owes to how it is called: its security scheme (from its guard) and its
//! problem responses, one per status, each listing the `code`s it may carry — those its handler
//! declares (`x-refusals`) and those its guard, body, path or query imply.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    Components, ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder,
    SecurityRequirement, Server,
};
use utoipa::{Modify, OpenApi as _, PartialSchema, ToSchema};

use super::extract::Empty;
use super::{ApiDoc, AppState, Guard, Route, API_ROUTES};
use crate::domain::{Initiator, Refusal};

/// The security scheme of the service API: `Authorization: Bearer <API key>`.
pub const API_KEY: &str = "api_key";
/// The security scheme of the approver and admin APIs: the session cookie of a passkey sign-in.
pub const SESSION: &str = "session";
/// Where a handler's annotation lists the refusals it adds to those its route implies.
pub const REFUSALS: &str = "x-refusals";
const PROBLEM: &str = "Problem";

/// The document as served: for this server's origin and session cookie.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "public",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(state.config.public_origin.clone())]);
    doc.components
        .get_or_insert_with(Components::new)
        .add_security_scheme(SESSION, session_scheme(state.cookie_name()));
    HttpResponse::Ok().json(doc)
}

fn session_scheme(cookie: &str) -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
        cookie,
        "The session of a passkey sign-in (POST /v1/session/finish sets it). Calls that change \
         something must also send our Origin.",
    )))
}

/// What the handlers' annotations leave to the routes: see the module's documentation.
pub struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut OpenApi) {
        doc.info.title = "countersign".into();
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.description = Some(
            "Transaction-signing step-up approvals: a service asks for one exact transaction to \
             be approved, approvers decide with passkeys, and the service redeems the signed \
             receipt once. Errors are RFC 9457 problem responses with a stable `code`."
                .into(),
        );
        let components = doc.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(SESSION, session_scheme("countersign-session"));
        components
            .schemas
            .insert(PROBLEM.into(), problem_schema().into());
        for route in API_ROUTES {
            if let Some(op) = doc
                .paths
                .paths
                .get_mut(route.path)
                .and_then(|item| operation(item, route.method))
            {
                fulfil(op, route);
            }
        }
    }
}

fn operation<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "post" => item.post.as_mut(),
        _ => None,
    }
}

/// The refusals a route may answer with, whatever its handler does.
fn implied(op: &Operation, route: &Route) -> Vec<Refusal> {
    let mut out = vec![Refusal::Internal];
    let write = route.method != "get";
    match route.guard {
        Guard::Client => out.extend([
            Refusal::Unauthorized,
            Refusal::RateLimited,
            Refusal::StoreUnavailable,
        ]),
        Guard::Approver => out.extend([Refusal::Unauthorized, Refusal::StoreUnavailable]),
        Guard::Origin => out.push(Refusal::StoreUnavailable),
        Guard::Public => {}
    }
    if write && matches!(route.guard, Guard::Approver | Guard::Origin) {
        out.push(Refusal::BadOrigin);
    }
    if write {
        out.extend([
            Refusal::InvalidRequest,
            Refusal::UnsupportedMediaType,
            Refusal::PayloadTooLarge,
            Refusal::RequestTimeout,
        ]);
    }
    if route.path.contains('{') {
        out.push(Refusal::NotFound);
    }
    let queried = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
    if queried {
        out.push(Refusal::InvalidRequest);
    }
    out
}

/// Adds the route's security requirement and its problem responses.
fn fulfil(op: &mut Operation, route: &Route) {
    let mut refusals = implied(op, route);
    if let Some(ext) = op.extensions.as_mut() {
        if let Some(declared) = ext.remove(REFUSALS) {
            refusals.extend(
                declared
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|code| code.as_str().and_then(Refusal::from_code)),
            );
        }
        if ext.is_empty() {
            op.extensions = None;
        }
    }
    // A call without parameters takes nothing or `{}` (`extract::EmptyBody`): its body may
    // be left out, but is never JSON `null`.
    if let Some(RefOr::T(body)) = op.request_body.as_mut() {
        let empty_ref = Ref::from_schema_name(Empty::name());
        let empty = body
            .content
            .values()
            .any(|c| matches!(c, RefOr::T(c) if c.schema == Some(RefOr::Ref(empty_ref.clone()))));
        if empty {
            body.required = Some(Required::False);
        }
    }
    let scheme = match route.guard {
        Guard::Client => Some(API_KEY),
        Guard::Approver => Some(SESSION),
        Guard::Public | Guard::Origin => None,
    };
    if let Some(scheme) = scheme {
        op.security = Some(vec![SecurityRequirement::new(scheme, NO_SCOPES)]);
    }
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    // In the list's order, each once: the document reads the same from one build to the next.
    for refusal in Refusal::ALL.iter().filter(|r| refusals.contains(r)) {
        by_status
            .entry(refusal.status())
            .or_default()
            .push(refusal.code());
    }
    for (status, codes) in by_status {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem_response(status, &codes).into());
    }
}

const NO_SCOPES: [&str; 0] = [];

/// RFC 9457 with our stable `code` (API.md): what every refusal's body holds.
fn problem_schema() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem. `code` is stable; `detail` is for people. A refusal may add a \
             member of its own (`current_hash` with `idempotency_conflict`, say).",
        ))
        .property(
            "type",
            string().description(Some("urn:countersign:problem:<code>")),
        )
        .property("title", string())
        .property("status", ObjectBuilder::new().schema_type(Type::Integer))
        .property("detail", string())
        .property("code", string())
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .required("code")
        .into()
}

fn problem_response(status: u16, codes: &[&'static str]) -> utoipa::openapi::Response {
    let reason = actix_web::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name(PROBLEM))
        .item(
            ObjectBuilder::new()
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().copied())),
                )
                .property(
                    "status",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .enum_values(Some([status])),
                ),
        );
    let mut response = ResponseBuilder::new()
        .description(format!("{reason}: {}", codes.join(", ")))
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build()
    };
    if status == 401 {
        response = response.header("WWW-Authenticate", header("Bearer"));
    }
    if status == 429 {
        response = response.header("Retry-After", header("Seconds to wait"));
    }
    response.build()
}

/// A username, or the party object (`crate::domain::initiator`).
impl PartialSchema for Initiator {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        OneOfBuilder::new()
            .item(string().description(Some("A person's username")))
            .item(
                ObjectBuilder::new()
                    .property(
                        "type",
                        string().enum_values(Some(["person", "agent", "service"])),
                    )
                    .property("id", string())
                    .property(
                        "on_behalf_of",
                        string().description(Some("The person an agent or service acts for")),
                    )
                    .required("type")
                    .required("id")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .into()
    }
}

impl ToSchema for Initiator {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.clone(), path.clone(), op));
            }
        }
        out
    }

    #[test]
    fn the_document_has_every_route_and_nothing_else() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let routed: BTreeSet<(String, String)> = API_ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        assert_eq!(documented, routed);
        assert_eq!(routed.len(), API_ROUTES.len(), "a route is listed twice");
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = doc();
        let ops = operations(&doc);
        let ids: BTreeSet<&str> = ops
            .iter()
            .map(|(_, _, op)| op["operationId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), ops.len());
    }

    #[test]
    fn every_problem_response_lists_its_codes_under_their_status() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            assert!(
                op.get(REFUSALS).is_none(),
                "{method} {path} kept {REFUSALS}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500"),
                "{method} {path} lacks internal"
            );
            for (status, response) in responses {
                let status: u16 = status.parse().unwrap();
                if status < 400 || (path == "/readyz" && status == 503) {
                    continue;
                }
                let schema = &response["content"]["application/problem+json"]["schema"];
                let codes = schema["allOf"][1]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no codes"));
                assert!(!codes.is_empty());
                for code in codes {
                    let refusal = Refusal::from_code(code.as_str().unwrap()).unwrap();
                    assert_eq!(refusal.status(), status, "{method} {path}: {code}");
                }
            }
        }
    }

    #[test]
    fn what_a_route_implies_is_listed() {
        let doc = doc();
        let codes = |path: &str, method: &str, status: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"][status]["content"]["application/problem+json"]
                ["schema"]["allOf"][1]["properties"]["code"]["enum"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default()
        };
        // The client guard, a body and a path parameter, then what the handler declares.
        assert_eq!(
            codes("/v1/approvals/{id}/cancel", "post", "401"),
            ["unauthorized"]
        );
        assert_eq!(
            codes("/v1/approvals/{id}/cancel", "post", "415"),
            ["unsupported_media_type"]
        );
        assert_eq!(
            codes("/v1/approvals/{id}/cancel", "post", "404"),
            ["not_found"]
        );
        assert_eq!(
            codes("/v1/approvals/{id}/cancel", "post", "409"),
            ["not_pending"]
        );
        // A call without parameters may leave its body out.
        let cancel = &doc["paths"]["/v1/approvals/{id}/cancel"]["post"]["requestBody"];
        assert_eq!(cancel["required"], false);
        let create = &doc["paths"]["/v1/approvals"]["post"]["requestBody"];
        assert_eq!(create["required"], true);
        // A session, and our Origin on a call that changes something.
        assert_eq!(
            codes("/v1/admin/changes", "post", "403"),
            ["forbidden", "bad_origin"]
        );
        assert_eq!(
            codes("/v1/me/approvals", "get", "403"),
            Vec::<String>::new()
        );
        assert_eq!(codes("/v1/me/approvals", "get", "400"), ["invalid_request"]);
        assert_eq!(
            codes("/v1/receipts/redeem", "post", "409"),
            ["already_redeemed", "receipt_revoked"]
        );
    }

    #[test]
    fn security_follows_the_guard() {
        let doc = doc();
        for route in API_ROUTES {
            let security = &doc["paths"][route.path][route.method]["security"];
            let expected = match route.guard {
                Guard::Client => serde_json::json!([{ API_KEY: [] }]),
                Guard::Approver => serde_json::json!([{ SESSION: [] }]),
                Guard::Public | Guard::Origin => Value::Null,
            };
            assert_eq!(security, &expected, "{} {}", route.method, route.path);
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes[API_KEY]["scheme"], "bearer");
        assert_eq!(schemes[SESSION]["in"], "cookie");
    }
}
