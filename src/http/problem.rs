//! RFC 9457 problem responses. Every error a client sees is a [`Refusal`] from the one list,
//! with its status and stable `code`; causes are logged here and never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::domain::Refusal;
use crate::service::Error;
use crate::store::StoreError;

/// What a handler fails with: a use case's error, answered as a problem response.
pub type ApiError = Error;

fn status(refusal: Refusal) -> StatusCode {
    StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        status(self.refusal())
    }

    fn error_response(&self) -> HttpResponse {
        let refusal = self.refusal();
        let detail = match self {
            Error::Refused { detail, .. } => detail.to_string(),
            Error::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "store unavailable");
                refusal.message().to_owned()
            }
            Error::Store(cause) => {
                tracing::error!(error = %cause, "store error");
                refusal.message().to_owned()
            }
        };
        let status = status(refusal);
        let mut body = json!({
            "type": format!("urn:countersign:problem:{}", refusal.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": refusal.code(),
        });
        if let (
            Error::Refused {
                extra: Some((key, value)),
                ..
            },
            Some(obj),
        ) = (self, body.as_object_mut())
        {
            obj.insert((*key).to_owned(), json!(value));
        }
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if refusal == Refusal::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if refusal == Refusal::RateLimited {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        if refusal == Refusal::RequestTimeout {
            // The rest of a body that did not arrive must not be read as the next request.
            res.insert_header((header::CONNECTION, "close"));
        }
        res.body(body.to_string())
    }
}
