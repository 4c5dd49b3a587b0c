//! The stylesheet, the script and the icon, compiled into the binary.

use actix_web::HttpResponse;

use super::respond::page_headers;

const APP_JS: &str = include_str!("../../../static/app.js");
const APP_CSS: &str = include_str!("../../../static/app.css");
const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1d4ed8"/><path d="M9 16.5l4.5 4.5L23 11.5" fill="none" stroke="#fff" stroke-width="3.2" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    page_headers(&mut res);
    res.content_type(content_type).body(body)
}

pub async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

pub async fn icon() -> HttpResponse {
    asset("image/svg+xml", ICON_SVG)
}
