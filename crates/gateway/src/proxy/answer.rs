//! What the client gets from an exchange: the upstream's answer, or a problem saying why
//! there is none (error mapping, in one place).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kit::Problem;

use super::exchange::{Attempt, ClientFault, Exchange};
use super::headers::strip_response;
use crate::upstream::Unavailable;

pub fn to_client(attempt: Attempt, exchange: &Exchange) -> Response {
    let name = exchange.upstream.name;
    let problem = match attempt {
        Attempt::Response(res) => return strip_response(res),
        Attempt::Refused(Unavailable::BreakersOpen(wait)) => Problem::unavailable(
            format!("The {name} service is failing; requests are refused until it recovers."),
            wait.as_secs().max(1),
        ),
        Attempt::Refused(Unavailable::NoHealthyInstance) => {
            Problem::unavailable(format!("No instance of the {name} service is healthy."), 2)
        }
        Attempt::TimedOut(waited) => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream-timeout", "Upstream timed out")
                .detail(format!("The {name} service did not answer within {} ms.", waited.as_millis()))
        }
        Attempt::NotSent(e) | Attempt::Failed(e) => {
            tracing::warn!(upstream = name, error = %e, "upstream request failed");
            Problem::unavailable(format!("The {name} service is not reachable right now."), 1)
        }
        Attempt::ClientFault(ClientFault::TooLarge) => {
            kit::extract::payload_too_large(format!("The body may be at most {} bytes.", exchange.body_limit))
        }
        Attempt::ClientFault(ClientFault::Broken) => Problem::bad_request("The request body could not be read."),
    };
    problem.into_response()
}
