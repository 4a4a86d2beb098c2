//! The caller's own account: name, time zone, snippet labels, click filter.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::auth::Auth;
use super::{Api, AppState, JsonBody};
use crate::domain::parse_timezone;
use crate::domain::{Account, AccountPatch, ClickFilter};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;

pub fn router() -> Api {
    Api::new("account")
        .get("/rest/v2/account", "The account of the API key: settings and keys (prefixes only).", get_account)
        .returns::<AccountView>(&[200])
        .patch("/rest/v2/account", "Change name, timezone, snippet_labels or click_filter (merged).", patch_account)
        .body::<AccountBody>()
        .returns::<AccountView>(&[200])
}

/// The account an API key belongs to, its settings and its keys (never a key itself).
#[derive(Serialize, utoipa::ToSchema)]
struct AccountView {
    /// The webhook's `firm_id`.
    id: i64,
    name: String,
    #[schema(example = "Europe/Warsaw")]
    timezone: String,
    /// Labels of Woodpecker's snippets, by number (`"1"` to `"15"`), in that order.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    snippet_labels: Map<String, Value>,
    /// How clicks are judged and which are delivered.
    #[schema(value_type = Object)]
    click_filter: ClickFilter,
    api_keys: Vec<KeyView>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct KeyView {
    /// The key's first characters, to tell keys apart.
    prefix: String,
    created: String,
    revoked: Option<String>,
}

async fn account_view(st: &AppState, a: &Account) -> ApiResult<AccountView> {
    let tz = &a.timezone;
    let keys = st.store.list_api_keys(a.id).await?;
    Ok(AccountView {
        id: a.id,
        name: a.name.clone(),
        timezone: a.timezone.clone(),
        snippet_labels: a.snippet_labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect(),
        click_filter: a.click_filter.clone(),
        api_keys: keys
            .iter()
            .map(|k| KeyView {
                prefix: k.prefix.clone(),
                created: format_time(k.created_at, tz),
                revoked: k.revoked_at.map(|t| format_time(t, tz)),
            })
            .collect(),
    })
}

async fn get_account(State(st): State<AppState>, Auth(account): Auth) -> ApiResult<Response> {
    Ok(Json(account_view(&st, &account).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    snippet_labels: Option<Map<String, Value>>,
    #[serde(default)]
    click_filter: Option<Map<String, Value>>,
}

/// Labels merge into the current ones; `""` or null removes a label.
pub(crate) fn merge_labels(
    current: &BTreeMap<u8, String>,
    given: Map<String, Value>,
) -> ApiResult<BTreeMap<u8, String>> {
    let mut out = current.clone();
    for (k, v) in given {
        let slot: u8 = k
            .trim_start_matches("snippet")
            .parse()
            .ok()
            .filter(|n| (1..=15).contains(n))
            .ok_or_else(|| ApiError::wrong_param(format!("snippet_labels: {k:?} is not a snippet slot 1..15.")))?;
        match v {
            Value::String(s) if !s.trim().is_empty() => {
                out.insert(slot, s.trim().to_string());
            }
            Value::String(_) | Value::Null => {
                out.remove(&slot);
            }
            _ => {
                return Err(ApiError::wrong_param(format!(
                    "snippet_labels: the label of slot {slot} must be a string."
                )))
            }
        }
    }
    Ok(out)
}

pub(crate) fn merge_filter(current: &ClickFilter, given: Map<String, Value>) -> ApiResult<ClickFilter> {
    let Value::Object(mut merged) = serde_json::to_value(current).map_err(|_| ApiError::internal())? else {
        return Err(ApiError::internal());
    };
    merged.extend(given);
    let f: ClickFilter = serde_json::from_value(Value::Object(merged))
        .map_err(|e| ApiError::wrong_param(format!("click_filter: {e}.")))?;
    f.check().map_err(|e| ApiError::wrong_param(format!("click_filter: {}", e.msg)))?;
    Ok(f)
}

async fn patch_account(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(b): JsonBody<AccountBody>,
) -> ApiResult<Response> {
    let name = match b.name {
        Some(n) if n.trim().is_empty() => return Err(ApiError::required("name")),
        other => other.map(|n| n.trim().to_string()),
    };
    let patch = AccountPatch {
        name,
        timezone: b.timezone.as_deref().map(parse_timezone).transpose()?.map(|tz| tz.name().to_string()),
        snippet_labels: b.snippet_labels.map(|l| merge_labels(&account.snippet_labels, l)).transpose()?,
        click_filter: b.click_filter.map(|f| merge_filter(&account.click_filter, f)).transpose()?,
    };
    let updated = st.store.update_account(account.id, patch).await?;
    st.auth.clear();
    Ok(Json(account_view(&st, &updated).await?).into_response())
}
