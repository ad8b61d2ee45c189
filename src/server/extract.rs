//! Request extractors whose refusals are problem documents: a body that is not the JSON a
//! route takes, a query parameter of the wrong type, are `400 bad-request` naming the
//! field — never axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::problem::ApiError;

/// A JSON body of type `T`.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_problem(rejection, state.limits.body_limit)),
        }
    }
}

/// An optional JSON body: an empty body is `T::default()`.
pub(crate) struct MaybeBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for MaybeBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.body_limit;
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge { limit }
                } else {
                    ApiError::BadRequest {
                        detail: e.body_text(),
                        field: None,
                    }
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(MaybeBody)
            .map_err(|e| ApiError::BadRequest {
                detail: format!("the body is not the JSON this route takes: {e}"),
                field: None,
            })
    }
}

/// The problem of a body refused by axum's JSON extractor; `body_limit` is the server's
/// `server.body_limit`, named in a too-large reply.
fn json_problem(rejection: JsonRejection, body_limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // "field: reason at line L column C": name the field when serde does.
            let text = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.body_text());
            let field = text
                .split_once(": ")
                .map(|(path, _)| path.to_owned())
                .filter(|p| !p.contains(' '));
            ApiError::BadRequest {
                detail: format!("the body is not the JSON this route takes: {text}"),
                field,
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
            detail: format!("the body is not valid JSON: {}", e.body_text()),
            field: None,
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest {
            detail: "send the body with Content-Type: application/json".into(),
            field: None,
        },
        other => {
            if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: body_limit }
            } else {
                ApiError::BadRequest {
                    detail: other.body_text(),
                    field: None,
                }
            }
        }
    }
}

/// Query parameters of type `T`.
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e: QueryRejection| ApiError::BadRequest {
                detail: format!("bad query parameters: {}", e.body_text()),
                field: None,
            })
    }
}
