//! `/openapi.json`, generated from the route table ([`super::Api`]): each operation as it is
//! routed, with the query parameters it takes (the same declarations refuse any other), its
//! path parameters, its request body's schema (derived from the very type the handler reads,
//! by utoipa) and the errors it can answer.

use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};

use super::Op;

/// One query parameter an operation takes.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub about: &'static str,
}

/// What a query parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Integer,
    /// `page`, from 1.
    Page,
    /// `per_page`, up to this many.
    PerPage(i64),
    /// Comma-separated integers.
    Ids,
    /// An ISO 8601 time or Unix milliseconds.
    Time,
    Text,
    /// One of these words (any case).
    OneOf(&'static [&'static str]),
}

impl Param {
    pub const fn new(name: &'static str, kind: Kind, about: &'static str) -> Self {
        Param { name, kind, about }
    }
    pub const PAGE: Param = Param::new("page", Kind::Page, "The page, from 1.");
    pub const fn per_page(max: i64) -> Self {
        Param::new("per_page", Kind::PerPage(max), "Items per page (default 100).")
    }
    pub const fn since(about: &'static str) -> Self {
        Param::new("since", Kind::Time, about)
    }
    pub const fn until(about: &'static str) -> Self {
        Param::new("until", Kind::Time, about)
    }

    fn schema(&self) -> Value {
        match self.kind {
            Kind::Integer => json!({"type": "integer", "format": "int64"}),
            Kind::Page => json!({"type": "integer", "format": "int64", "minimum": 1, "default": 1}),
            Kind::PerPage(max) => {
                json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": max, "default": 100})
            }
            Kind::Ids => json!({"type": "array", "items": {"type": "integer", "format": "int64"}}),
            Kind::Time => json!({"type": "string", "examples": ["2025-03-21T20:47:47+0100", "1742586467000"]}),
            Kind::Text => json!({"type": "string"}),
            Kind::OneOf(words) => json!({"type": "string", "enum": words}),
        }
    }

    fn document(&self) -> Value {
        // An empty value is no filter at all (`?status=` lists everything).
        let mut p = json!({"name": self.name, "in": "query", "required": false, "description": self.about,
                           "allowEmptyValue": true, "schema": self.schema()});
        if matches!(self.kind, Kind::Ids) {
            p["style"] = json!("form");
            p["explode"] = json!(false);
        }
        p
    }
}

/// A request body's schema: the name it is filed under, and every schema it refers to.
pub type BodySchema = fn(&mut Vec<(String, RefOr<Schema>)>) -> String;

/// The [`BodySchema`] of a type the handler reads.
pub fn body_schema<T: utoipa::ToSchema>(into: &mut Vec<(String, RefOr<Schema>)>) -> String {
    T::schemas(into);
    into.push((T::name().into_owned(), T::schema()));
    T::name().into_owned()
}

/// What an operation answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub struct Returns {
    pub statuses: &'static [u16],
    /// A JSON array of the type, with the total in `X-Total-Count`.
    pub list: bool,
    pub schema: BodySchema,
}

/// An OpenAPI document, as `/openapi.json` answers it.
pub struct Document;

impl utoipa::PartialSchema for Document {
    fn schema() -> RefOr<Schema> {
        let schema = json!({"type": "object", "required": ["openapi", "info", "paths"],
                            "description": "OpenAPI 3.1: https://spec.openapis.org/oas/v3.1.0"});
        serde_json::from_value(schema).expect("the document's schema parses")
    }
}

impl utoipa::ToSchema for Document {
    fn name() -> std::borrow::Cow<'static, str> {
        "OpenApiDocument".into()
    }
}

/// What a request's body is.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    Json(BodySchema),
    /// Text of a media type, e.g. a CSV file.
    Text(&'static str),
}

/// The document for these operations.
pub fn document(ops: &[Op]) -> Value {
    let mut paths = Map::new();
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    for op in ops {
        let path_params: Vec<&str> =
            op.path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let mut params: Vec<Value> = path_params
            .iter()
            .map(|name| {
                let schema = if *name == "id" || name.ends_with("_id") {
                    json!({"type": "integer", "format": "int64"})
                } else {
                    json!({"type": "string"})
                };
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        params.extend(op.query.iter().map(Param::document));
        let error = |about: &str| json!({"description": about, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut responses = Map::new();
        match op.returns {
            Some(r) => {
                let name = (r.schema)(&mut schemas);
                let one = json!({"$ref": format!("#/components/schemas/{name}")});
                let schema = if r.list { json!({"type": "array", "items": one}) } else { one };
                for status in r.statuses {
                    let mut ok =
                        json!({"description": op.summary, "content": {"application/json": {"schema": schema}}});
                    if r.list {
                        ok["headers"] = json!({"X-Total-Count": {"description": "How many there are in all.",
                                                                 "schema": {"type": "integer"}}});
                    }
                    responses.insert(status.to_string(), ok);
                }
            }
            // No JSON success: only the statuses declared empty, or a body of another kind.
            None if op.produces == "application/json" => {}
            None => {
                let ok = json!({"description": op.summary, "content": {op.produces: {"schema": {"type": "string"}}}});
                responses.insert("200".into(), ok);
            }
        }
        responses.entry("default").or_insert_with(|| error("Any other error, e.g. 503 while the store cannot answer."));
        for (status, about) in op.empty {
            responses.insert(status.to_string(), json!({"description": about}));
        }
        for (status, about) in op.errors {
            responses.insert(status.to_string(), error(about));
        }
        if !params.is_empty() || op.body.is_some() {
            responses.insert("400".into(), error("Input that does not parse, named in the message."));
        }
        if op.authenticated {
            responses.insert("401".into(), error("No API key, or one that is not valid."));
        }
        if !path_params.is_empty() {
            responses.insert("404".into(), error("Nothing of that id in this account."));
        }
        if op.body.is_some() {
            responses.insert("413".into(), error("The body is larger than --max-body-bytes."));
        }
        let mut operation = json!({
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": format!("{}{}", op.method.as_str().to_lowercase(), op.path.replace(['/', '{', '}'], "_")),
            "parameters": params,
            "responses": responses,
        });
        match op.body {
            Some(Body::Json(schema)) => {
                let name = schema(&mut schemas);
                operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                    "schema": {"$ref": format!("#/components/schemas/{name}")}}}});
            }
            Some(Body::Text(media)) => {
                operation["requestBody"] =
                    json!({"required": true, "content": {media: {"schema": {"type": "string"}}}});
            }
            None => {}
        }
        if !op.authenticated {
            operation["security"] = json!([]);
        }
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[op.method.as_str().to_lowercase()] = operation;
    }
    let mut components = Map::new();
    for (name, schema) in schemas {
        components.insert(name, serde_json::to_value(schema).expect("a schema serializes"));
    }
    components.insert(
        "Error".into(),
        json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "object",
            "required": ["status", "code", "msg"], "properties": {
            "status": {"type": "string", "enum": ["ERROR"]},
            "code": {"type": "string", "examples": ["E_WRONG_PARAM"]},
            "msg": {"type": "string", "description": "What failed, and where in the input."}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "webhooks": {"link_clicked": link_clicked()},
        "info": {"title": "clickhook", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Link tracking with Woodpecker-compatible link_clicked webhooks."},
        "paths": paths,
        "security": [{"apiKey": []}, {"basic": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "basic": {"type": "http", "scheme": "basic", "description": "The API key as user name."}
            },
            "schemas": components,
        }
    })
}

/// What clickhook POSTs to each subscribed URL: Woodpecker's `link_clicked` body, with its
/// published example, signed per Standard Webhooks.
fn link_clicked() -> Value {
    let example: Value = serde_json::from_str(include_str!("../../data/link_clicked.example.json"))
        .expect("the published example is JSON");
    let header = |name: &str, about: &str, example: &str| {
        json!({"name": name, "in": "header", "required": true, "description": about,
               "schema": {"type": "string", "examples": [example]}})
    };
    let required = ["method", "prospect", "click_url", "step", "email_no", "timestamp", "firm_id"];
    json!({"post": {
        "summary": "Clicks judged human, up to 100 in one batch, in click order.",
        "description": "Retried with growing delays until a 2xx answer; the webhook-id stays the same \
                        on every try, so a receiver can drop repeats.",
        "parameters": [
            header("webhook-id", "The batch's id, the same on every retry.", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            header("webhook-timestamp", "Unix seconds when this try was signed.", "1649367553"),
            header("webhook-signature", "v1, and HMAC-SHA256 of id.timestamp.body under the secret.",
                   "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="),
        ],
        "requestBody": {"required": true, "content": {"application/json": {
            "schema": {"type": "array", "maxItems": 100, "items": {"type": "object", "required": required,
                "properties": {"method": {"type": "string", "enum": ["link_clicked"]},
                               "prospect": {"type": "object"}, "click_url": {"type": "string"},
                               "step": {"type": "integer"}, "email_no": {"type": "string"},
                               "timestamp": {"type": "string"}, "firm_id": {"type": "integer"}}}},
            "example": example}}},
        "responses": {"2XX": {"description": "Received: the batch is done."},
                      "default": {"description": "Not received: retried later."}},
    }})
}
