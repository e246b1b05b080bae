//! `[forward_auth]`: how an edge asks this service whether a request may pass.

use super::ForwardAuthDecl;
use super::strings::{parse_header_name, parse_url_path};
use crate::syntax::decode::{Sink, TableReader, typed};

/// `[forward_auth]`; `None` when its endpoint or uri is unusable.
pub(super) fn forward_auth(mut t: TableReader<'_>, sink: &Sink) -> Option<ForwardAuthDecl> {
    let d = (
        t.req_str("endpoint", "\"http\""),
        typed(t.req_str("uri", "\"/auth\""), sink, parse_url_path),
        t.str_list("copy_headers").into_iter().filter_map(|h| typed(Some(h), sink, parse_header_name)).collect(),
        typed(t.str("traefik_uri"), sink, parse_url_path),
        t.str_list("paths").into_iter().filter_map(|p| typed(Some(p), sink, parse_url_path)).collect(),
    );
    t.finish();
    Some(ForwardAuthDecl { endpoint: d.0?, uri: d.1?, copy_headers: d.2, traefik_uri: d.3, paths: d.4 })
}
