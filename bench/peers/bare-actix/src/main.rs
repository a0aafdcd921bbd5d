use actix_web::{post, web, App, HttpResponse, HttpServer};

/// The upstream's base URL: `UPSTREAM` from the environment (bench/run.py sets it from
/// `--upstream-port`), else the bench nginx on 127.0.0.1:18081. Read once, at start.
static UPSTREAM_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[post("/connectors/composite/{permalink}/execute")]
async fn execute(client: web::Data<awc::Client>, body: web::Bytes) -> HttpResponse {
    let upstream = UPSTREAM_URL.get().map(String::as_str).unwrap_or_default();
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let client_id = payload["clientId"].as_str().unwrap_or_default();
    let token_body = format!("{{\"client_id\": \"{client_id}\"}}");
    let mut token = match client
        .post(format!("{upstream}/oauth/token"))
        .insert_header(("Content-Type", "application/json"))
        .send_body(token_body)
        .await
    {
        Ok(r) => r,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let token_json: serde_json::Value = match token.json().await {
        Ok(v) => v,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let bearer = format!("Bearer {}", token_json["access_token"].as_str().unwrap_or_default());
    let mut user = match client
        .get(format!("{upstream}/users/me"))
        .insert_header(("Authorization", bearer))
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let bytes = match user.body().await {
        Ok(b) => b,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    HttpResponse::Ok().content_type("application/json").body(bytes)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(18092);
    let upstream = std::env::var("UPSTREAM").unwrap_or_else(|_| "http://127.0.0.1:18081".to_string());
    UPSTREAM_URL.set(upstream).expect("set once, at start");
    HttpServer::new(|| App::new().app_data(web::Data::new(awc::Client::default())).service(execute))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
