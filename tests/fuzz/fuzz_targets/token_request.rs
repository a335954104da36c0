//! The token endpoint's request parser (form body and HTTP Basic header) and
//! the revoke/introspect parser, on one input written as HTTP headers, an
//! empty line and the body (see the seeds in corpus/token_request).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = common::http_message(data);
    common::check_token_parsers(&headers, &body);
});
