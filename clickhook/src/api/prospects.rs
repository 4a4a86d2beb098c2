//! Prospects: Woodpecker's v1 endpoints and the native CSV import.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};

use super::auth::Auth;
use super::{ok_status, woodpecker_list_response, Api, AppState, JsonBody, Kind, OkStatus, Param, Params};
use crate::domain::prospect::{SearchField, SortKey, Upserted};
use crate::domain::Prospect;
use crate::domain::{EmailAddress, Interested, ProspectFields, ProspectInput, ProspectStatus, TEXT_FIELDS};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;
use crate::store::{ProspectQuery, UpsertProspects};

/// Woodpecker's limit per add request.
pub const MAX_PER_REQUEST: usize = 20_000;

pub fn router() -> Api {
    Api::new("prospects")
        .get(
            "/rest/v1/prospects",
            "List prospects: page, per_page, sort, id, status, interested, campaigns_id, search.",
            list,
        )
        .returns_list::<ProspectView>()
        .empty(&[(204, "No prospect matches (Woodpecker answers so).")])
        .query(
            const {
                &[
                    Param::PAGE,
                    Param::per_page(1000),
                    Param::new("sort", Kind::Text, "Fields to sort by, comma-separated, each with + or - first."),
                    Param::new("id", Kind::Ids, "Prospects with these ids."),
                    Param::new("status", Kind::OneOf(ProspectStatus::WIRE), "Prospects in this status."),
                    Param::new("interested", Kind::OneOf(Interested::WIRE), "Prospects marked so."),
                    Param::new("campaigns_id", Kind::Ids, "Prospects enrolled in any of these campaigns."),
                    Param::new("search", Kind::Text, "Woodpecker's search: field=value terms, comma-separated."),
                ]
            },
        )
        .delete("/rest/v1/prospects", "Delete prospects by id (comma-separated).", delete)
        .query(const { &[Param::new("id", Kind::Ids, "The prospects to delete.")] })
        .returns::<OkStatus>(&[200])
        .errors(&[(404, "None of these prospects is in this account.")])
        .post("/rest/v1/add_prospects_list", "Add or update prospects (matched by email).", add_list)
        .body::<AddList>()
        .returns::<AddReport>(&[200])
        .post("/rest/v1/add_prospects_campaign", "Add or update prospects and enroll them in a campaign.", add_campaign)
        .body::<AddCampaign>()
        .returns::<AddReport>(&[200])
        .post("/rest/v1/stop_followups", "Stop a prospect in every campaign.", stop_followups)
        .body::<StopFollowups>()
        .returns::<OkStatus>(&[200])
        .errors(&[(404, "No prospect with this email in this account.")])
        .post("/rest/v2/prospects/import", "Import prospects from a CSV body; file_name names the file.", import)
        .text_body("text/csv")
        .returns::<crate::import::ImportReport>(&[200])
        .query(
            const {
                &[
                    Param::new("file_name", Kind::Text, "The file's name, for the import's record."),
                    Param::new("campaign_id", Kind::Integer, "Enroll every prospect imported in this campaign."),
                ]
            },
        )
}

/// A prospect as Woodpecker's v1 lists it: every text field and snippet, `""` when empty.
#[derive(Serialize)]
#[serde(transparent)]
pub struct ProspectView(Map<String, Value>);

impl ProspectView {
    pub fn of(p: &Prospect, tz: &str) -> Self {
        let mut m = Map::new();
        m.insert("id".into(), json!(p.id));
        m.insert("email".into(), json!(p.email));
        let text = p.text_fields();
        for (name, v) in TEXT_FIELDS.iter().zip(text) {
            m.insert((*name).into(), json!(v));
        }
        for (i, s) in p.snippets.iter().enumerate() {
            m.insert(format!("snippet{}", i + 1), json!(s));
        }
        m.insert("status".into(), json!(p.status));
        m.insert("interested".into(), json!(p.interested));
        m.insert("imported".into(), json!(p.imported));
        m.insert("last_contacted".into(), json!(p.last_contacted.map(|t| format_time(t, tz)).unwrap_or_default()));
        m.insert("in_campaign".into(), json!(p.in_campaign));
        m.insert("emails_sent".into(), json!(p.emails_sent));
        m.insert("updated".into(), json!(format_time(p.updated_at, tz)));
        ProspectView(m)
    }
}

/// Made from the same field lists as [`ProspectView::of`].
impl utoipa::PartialSchema for ProspectView {
    fn schema() -> RefOr<Schema> {
        let text = json!({"type": "string"});
        let int = json!({"type": "integer", "format": "int64"});
        let mut props = Map::new();
        props.insert("id".into(), int.clone());
        props.insert("email".into(), json!({"type": "string", "examples": ["amy@bachmanity.com"]}));
        for name in TEXT_FIELDS {
            props.insert(name.into(), text.clone());
        }
        for i in 1..=Prospect::blank(0).snippets.len() {
            props.insert(format!("snippet{i}"), text.clone());
        }
        props.insert("status".into(), json!({"type": "string", "enum": ProspectStatus::WIRE}));
        let interested: Vec<Option<&str>> = Interested::WIRE.iter().copied().map(Some).chain([None]).collect();
        props.insert("interested".into(), json!({"type": ["string", "null"], "enum": interested}));
        props.insert("imported".into(), json!({"type": "string", "description": "The file or request it came from."}));
        props.insert("last_contacted".into(), json!({"type": "string", "description": "\"\" when never."}));
        props.insert("in_campaign".into(), int.clone());
        props.insert("emails_sent".into(), int);
        props.insert("updated".into(), json!({"type": "string", "examples": ["2025-03-21T20:47:47+0100"]}));
        let required: Vec<&String> = props.keys().collect();
        let schema = json!({"type": "object", "required": required, "properties": props});
        serde_json::from_value(schema).expect("a prospect's schema parses")
    }
}

impl utoipa::ToSchema for ProspectView {
    fn name() -> std::borrow::Cow<'static, str> {
        "Prospect".into()
    }
}

async fn list(State(st): State<AppState>, Auth(account): Auth, params: Params) -> ApiResult<Response> {
    let (offset, limit) = params.page(1000)?;
    let mut q = ProspectQuery {
        offset,
        limit,
        ids: params.ids("id")?,
        campaign_ids: params.ids("campaigns_id")?,
        ..Default::default()
    };
    if let Some(s) = params.str("status") {
        q.status = Some(ProspectStatus::parse(s)?);
    }
    if let Some(i) = params.str("interested") {
        q.interested = Some(Some(Interested::parse(i)?));
    }
    if let Some(sort) = params.str("sort") {
        for part in sort.split(',').filter(|s| !s.trim().is_empty()) {
            // A literal '+' arrives as a space once the query is decoded.
            let part = part.trim_start();
            let (desc, name) = match part.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            let key = SortKey::parse(name.trim())
                .ok_or_else(|| ApiError::wrong_param(format!("Cannot sort by {name:?}.")))?;
            q.sort.push((key, desc));
        }
    }
    if let Some(search) = params.str("search") {
        for term in search.split(',').filter(|s| !s.trim().is_empty()) {
            let (field, value) = term
                .split_once('=')
                .ok_or_else(|| ApiError::wrong_param(format!("search term {term:?} is not field=value.")))?;
            let field = SearchField::parse(field).ok_or_else(|| {
                ApiError::wrong_param(format!("Cannot search by {:?}.", field.trim().to_ascii_lowercase()))
            })?;
            q.search.push((field, value.trim().to_string()));
        }
    }
    let (total, prospects) = st.store.list_prospects(account.id, q).await?;
    Ok(woodpecker_list_response(total, prospects.iter().map(|p| ProspectView::of(p, &account.timezone)).collect()))
}

/// Woodpecker clients send `update` as a boolean or as the string "true"/"false".
fn parse_update(v: &Option<Value>) -> ApiResult<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        Some(other) => Err(ApiError::wrong_param(format!("update must be true or false, not {other}."))),
    }
}

/// One element of `prospects`: an object with `email` and prospect fields.
pub fn parse_prospect(v: &Value) -> ApiResult<ProspectInput> {
    let obj = v.as_object().ok_or_else(|| ApiError::wrong_param("A prospect must be a JSON object."))?;
    let email = match obj.get("email") {
        Some(Value::String(s)) => EmailAddress::parse(s)?,
        None | Some(Value::Null) => return Err(ApiError::required("email")),
        Some(_) => return Err(ApiError::email("email must be a string.")),
    };
    let mut fields = ProspectFields::default();
    for (k, v) in obj {
        if k == "email" {
            continue;
        }
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                if ProspectFields::is_field(k) {
                    return Err(ApiError::wrong_param(format!("{k} must be a string.")));
                }
                continue;
            }
        };
        // Unknown keys (ids, custom fields of other tools) are ignored, as Woodpecker does.
        fields.set(k, &value)?;
    }
    Ok(ProspectInput { email, fields })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"update": true, "file_name": "API import 2025-03-20",
                          "prospects": [{"email": "erlich@bachmanity.com", "first_name": "Erlich", "company": "Bachmanity"}]}))]
struct AddList {
    #[serde(default)]
    update: Option<Value>,
    #[serde(default)]
    file_name: Option<String>,
    prospects: Vec<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CampaignRef {
    #[serde(deserialize_with = "int_or_string")]
    campaign_id: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"campaign": {"campaign_id": 123456}, "update": "true",
                          "prospects": [{"email": "erlich@bachmanity.com", "first_name": "Erlich"}]}))]
struct AddCampaign {
    campaign: CampaignRef,
    #[serde(default)]
    update: Option<Value>,
    #[serde(default)]
    file_name: Option<String>,
    prospects: Vec<Value>,
}

pub fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| serde::de::Error::custom("expected an integer")),
        Value::String(s) => s.trim().parse().map_err(|_| serde::de::Error::custom("expected an integer")),
        other => Err(serde::de::Error::custom(format!("expected an integer, not {other}"))),
    }
}

async fn add(
    st: &AppState,
    account_id: i64,
    items: Vec<Value>,
    update: bool,
    imported: Option<String>,
    campaign_id: Option<i64>,
) -> ApiResult<Response> {
    if items.is_empty() {
        return Err(ApiError::required("prospects"));
    }
    if items.len() > MAX_PER_REQUEST {
        return Err(ApiError::wrong_param(format!("At most {MAX_PER_REQUEST} prospects per request.")));
    }
    let parsed: Vec<ApiResult<ProspectInput>> = items.iter().map(parse_prospect).collect();
    let valid: Vec<ProspectInput> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    if valid.is_empty() {
        let first = parsed.into_iter().find_map(Result::err).expect("no valid prospect means an error");
        return Err(first.at("prospects[0]"));
    }
    let outcomes = st
        .store
        .upsert_prospects(account_id, UpsertProspects { prospects: valid, update, imported, campaign_id, import: None })
        .await?;
    let mut outcomes = outcomes.into_iter();
    let prospects: Vec<Added> = parsed
        .iter()
        .zip(&items)
        .map(|(p, raw)| match p {
            Ok(p) => {
                let o = outcomes.next().expect("one outcome per valid prospect");
                let duplicate = matches!(o, Upserted::Unchanged(_));
                Added::Stored {
                    id: o.id(),
                    email: p.email.as_str().to_string(),
                    status: if duplicate { AddedStatus::Duplicate } else { AddedStatus::Ok },
                    created: matches!(o, Upserted::Created(_)),
                }
            }
            Err(e) => Added::Refused {
                email: raw.get("email").cloned().unwrap_or(Value::Null),
                status: Refused::Error,
                code: e.code.to_string(),
                msg: e.msg.clone(),
            },
        })
        .collect();
    Ok(Json(AddReport { prospects }).into_response())
}

/// What an add did with each prospect, in the order they were given.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"prospects": [
    {"id": 1, "email": "amy@bachmanity.com", "status": "OK", "created": true},
    {"email": "not an address", "status": "ERROR", "code": "E_EMAIL", "msg": "not an address is not an email address."}
]}))]
pub struct AddReport {
    prospects: Vec<Added>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Added {
    /// Stored: created, updated, or already so (DUPLICATE).
    Stored { id: i64, email: String, status: AddedStatus, created: bool },
    /// Not stored: the prospect's error, as an error envelope would give it.
    Refused {
        /// As given.
        email: Value,
        status: Refused,
        code: String,
        msg: String,
    },
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
enum AddedStatus {
    Ok,
    Duplicate,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Refused {
    Error,
}

async fn add_list(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(body): JsonBody<AddList>,
) -> ApiResult<Response> {
    let update = parse_update(&body.update)?;
    add(&st, account.id, body.prospects, update, body.file_name, None).await
}

async fn add_campaign(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(body): JsonBody<AddCampaign>,
) -> ApiResult<Response> {
    let update = parse_update(&body.update)?;
    add(&st, account.id, body.prospects, update, body.file_name, Some(body.campaign.campaign_id)).await
}

async fn delete(State(st): State<AppState>, Auth(account): Auth, params: Params) -> ApiResult<Response> {
    let ids = params.ids("id")?;
    if ids.is_empty() {
        return Err(ApiError::required("id"));
    }
    let n = st.store.delete_prospects(account.id, ids).await?;
    // Their links answer 404 from this node before the delete does (other nodes within moments).
    st.click.forget_removed_links().await?;
    if n == 0 {
        return Err(ApiError::not_found("Prospect"));
    }
    Ok(ok_status(format!("Deleted {n} prospect(s).")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"prospect": {"email": "erlich@bachmanity.com"}}))]
struct StopFollowups {
    prospect: StopWho,
}
#[derive(Deserialize, utoipa::ToSchema)]
struct StopWho {
    email: String,
}

async fn stop_followups(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(body): JsonBody<StopFollowups>,
) -> ApiResult<Response> {
    let email = EmailAddress::parse(&body.prospect.email)?;
    if !st.store.stop_followups(account.id, &email).await? {
        return Err(ApiError::not_found("Prospect"));
    }
    Ok(ok_status("Follow-ups stopped."))
}

async fn import(State(st): State<AppState>, Auth(account): Auth, params: Params, req: Request) -> ApiResult<Response> {
    let file_name = params.str("file_name").unwrap_or("API import").to_string();
    let campaign = params.int("campaign_id")?;
    let body = super::read_body(req, &st).await?;
    // Checked whole before anything is written: a bad file leaves the data as it was.
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::wrong_param("The CSV is not valid UTF-8; save it as UTF-8 and retry."));
    }
    if body.is_empty() {
        return Err(ApiError::wrong_param("The CSV is empty."));
    }
    let delimiter = crate::import::detect_delimiter(&body);
    let report =
        crate::import::import_csv(&st.store, account.id, campaign, &file_name, &body[..], delimiter, |_| {}).await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}
