//! CSV import of prospects, shared by `clickhook import` and `POST /rest/v2/prospects/import`.
//!
//! Streams: rows are read and validated a chunk at a time and written a chunk per
//! transaction, so a million-row file never sits in memory. Each rejected row is reported
//! with its line number and why; the others are imported (matched by email: update, else
//! create) with `imported` set to the file's name. An import lands whole or not at all: the
//! chunks journal what they change, and an import that fails is undone (`domain::import`).

use std::collections::HashSet;
use std::io::Read;

use serde::Serialize;

use crate::domain::import::{abandoned_before, ImportState};
use crate::domain::now_millis;
use crate::domain::prospect::Upserted;
use crate::domain::{EmailAddress, ProspectFields, ProspectInput};
use crate::error::ApiError;
use crate::store::{DynStore, StoreError, UpsertProspects};

const CHUNK: usize = 2000;
/// Rejected rows listed one by one; past this only the count grows.
const MAX_LISTED: usize = 1000;

/// What an import did: counts, and the first rows it refused with why.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
    pub errors: Vec<RowError>,
}

/// A refused row: its line in the file (the header is line 1) and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RowError {
    pub line: u64,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file as a whole is unusable (headers); nothing was imported.
    #[error("{0}")]
    File(ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::File(e) => e,
            ImportError::Store(e) => e.into(),
        }
    }
}

/// Validates the header row: `email` present, every name a prospect field, none twice.
fn columns(headers: &csv::ByteRecord) -> Result<Vec<String>, ApiError> {
    let mut seen = HashSet::new();
    let mut cols = Vec::new();
    for raw in headers.iter() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| ApiError::wrong_param("The CSV header row is not valid UTF-8."))?
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        let known = name == "email" || ProspectFields::is_field(&name);
        if !known {
            return Err(ApiError::wrong_param(format!(
                "Unknown CSV column {name:?}; columns are prospect fields such as email, first_name, snippet1."
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(ApiError::wrong_param(format!("The CSV column {name:?} appears twice.")));
        }
        cols.push(name);
    }
    if !seen.contains("email") {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "E_REQUIRED_ELEMENT",
            "The CSV has no email column.",
        ));
    }
    Ok(cols)
}

fn parse_row(cols: &[String], row: &csv::ByteRecord) -> Result<ProspectInput, String> {
    let mut email = None;
    let mut fields = ProspectFields::default();
    for (name, raw) in cols.iter().zip(row.iter()) {
        let value = std::str::from_utf8(raw).map_err(|_| format!("{name} is not valid UTF-8"))?;
        if name == "email" {
            email = Some(EmailAddress::parse(value).map_err(|e| e.msg)?);
        } else if !value.trim().is_empty() {
            fields.set(name, value).map_err(|e| e.msg)?;
        }
    }
    Ok(ProspectInput { email: email.ok_or("no email")?, fields })
}

/// The field delimiter of a CSV: the one of `,`, `;` and tab that its header row holds most of
/// (a header of one column: `,`). Spreadsheets save with `;` where `,` is the decimal mark.
pub fn detect_delimiter(head: &[u8]) -> u8 {
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (first_line.iter().filter(|b| *b == d).count(), *d == b','))
        .unwrap_or(b',')
}

/// Imports a CSV stream whose fields `delimiter` separates (see [`detect_delimiter`]).
/// `progress` is called after each chunk with rows read so far.
pub async fn import_csv(
    store: &DynStore,
    account_id: i64,
    campaign_id: Option<i64>,
    file_name: &str,
    input: impl Read,
    delimiter: u8,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(false).delimiter(delimiter).from_reader(input);
    let headers = reader
        .byte_headers()
        .map_err(|e| ImportError::File(ApiError::wrong_param(format!("Unreadable CSV header: {e}."))))?
        .clone();
    let cols = columns(&headers).map_err(ImportError::File)?;
    if let Some(c) = campaign_id {
        store.campaign(account_id, c).await?;
    }
    let import = store.begin_import(account_id, campaign_id).await?;
    let outcome = import_rows(store, account_id, campaign_id, file_name, reader, cols, import, &mut progress).await;
    let ended = store.end_import(import, if outcome.is_ok() { ImportState::Kept } else { ImportState::Undoing }).await;
    let outcome = match (outcome, ended) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(e)) => {
            // Its rows were all written, but not kept: it goes the way of a failed import.
            let _ = store.end_import(import, ImportState::Undoing).await;
            Err(e.into())
        }
        (Err(e), _) => Err(e),
    };
    if let Err(e) = tidy(store, import).await {
        tracing::warn!(import, "import not tidied away yet, the server will: {e}");
    }
    outcome
}

/// Tidies an ended import away (see [`crate::domain::import`]).
pub async fn tidy(store: &DynStore, import: i64) -> Result<(), StoreError> {
    while !store.tidy_import(import).await? {}
    Ok(())
}

/// Tidies away every ended import, and undoes those abandoned (the process that ran them died).
pub async fn tidy_ended(store: &DynStore) -> Result<(), StoreError> {
    for import in store.ended_imports(abandoned_before(now_millis())).await? {
        tidy(store, import).await?;
        tracing::info!(import, "ended import tidied away");
    }
    Ok(())
}

/// Tidies ended imports at start and every minute, until `stop`.
pub async fn janitor(store: DynStore, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = tidy_ended(&store).await {
            tracing::warn!("ended imports not tidied: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The rows of an import, a chunk per transaction, each journalled under `import`.
#[allow(clippy::too_many_arguments)]
async fn import_rows(
    store: &DynStore,
    account_id: i64,
    campaign_id: Option<i64>,
    file_name: &str,
    mut reader: csv::Reader<impl Read>,
    cols: Vec<String>,
    import: i64,
    progress: &mut impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut rows = 0u64;
    let mut record = csv::ByteRecord::new();
    let reject = |report: &mut ImportReport, line: u64, error: String| {
        report.rejected += 1;
        if report.errors.len() < MAX_LISTED {
            report.errors.push(RowError { line, error: crate::error::bounded(error) });
        }
    };
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut done = false;
        while chunk.len() < CHUNK {
            match reader.read_byte_record(&mut record) {
                Ok(false) => {
                    done = true;
                    break;
                }
                Ok(true) => {
                    rows += 1;
                    let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
                    match parse_row(&cols, &record) {
                        Ok(p) => chunk.push(p),
                        Err(why) => reject(&mut report, line, why),
                    }
                }
                Err(e) => {
                    rows += 1;
                    let line = e.position().map(|p| p.line()).unwrap_or(rows + 1);
                    let why = match e.kind() {
                        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                            format!("has {len} fields, the header has {expected_len}")
                        }
                        _ => e.to_string(),
                    };
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        return Err(ImportError::File(ApiError::wrong_param(format!("Reading the CSV failed: {e}."))));
                    }
                    reject(&mut report, line, why);
                }
            }
        }
        if !chunk.is_empty() {
            let imported = Some(file_name.to_string());
            let req = UpsertProspects { prospects: chunk, update: true, imported, campaign_id, import: Some(import) };
            for outcome in store.upsert_prospects(account_id, req).await? {
                match outcome {
                    Upserted::Created(_) => report.created += 1,
                    Upserted::Updated(_) | Upserted::Unchanged(_) => report.updated += 1,
                }
            }
        }
        progress(rows);
        if done {
            return Ok(report);
        }
    }
}

#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::NewAccount;
    use crate::store::ProspectQuery;

    /// One row: an address (valid or not) and a company name of any text.
    fn row() -> impl Strategy<Value = (String, String)> {
        ("([a-c]{1,2}@x\\.co|[A-C]{1,2}@X\\.CO|not-an-email|)", "[^\\x00]{0,12}|.{0,3}")
    }

    fn store() -> &'static (tokio::runtime::Runtime, DynStore, tempfile::TempDir) {
        static STORE: std::sync::OnceLock<(tokio::runtime::Runtime, DynStore, tempfile::TempDir)> =
            std::sync::OnceLock::new();
        STORE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let store = rt.block_on(crate::store::open(dir.path().join("i.db").to_str().unwrap())).unwrap();
            (rt, store, dir)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the rows, each one is counted once, every valid address is stored once
        /// (in any case), with the last non-blank company given for it, and the rest (bad
        /// addresses, NUL) is rejected.
        #[test]
        fn every_row_is_counted_and_valid_ones_stored(rows in prop::collection::vec(row(), 0..40)) {
            let (rt, store, _) = store();
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(["email", "company"]).unwrap();
            for (email, company) in &rows {
                csv.write_record([email, company]).unwrap();
            }
            let csv = csv.into_inner().unwrap();
            let (report, stored) = rt.block_on(async {
                let account = store.create_account(NewAccount { id: None, name: "P".into(), timezone: "UTC".into() }).await.unwrap();
                let report = import_csv(store, account.id, None, "p.csv", &csv[..], b',', |_| {}).await.unwrap();
                let q = ProspectQuery { limit: 1000, ..Default::default() };
                (report, store.list_prospects(account.id, q).await.unwrap().1)
            });
            let mut expected: HashMap<String, String> = HashMap::new();
            let mut valid = 0;
            for (email, company) in &rows {
                // A row with NUL in it is refused whole, like one with a bad address.
                let Ok(e) = EmailAddress::parse(email) else { continue };
                if company.contains('\0') {
                    continue;
                }
                valid += 1;
                let slot = expected.entry(e.key()).or_default();
                if !company.trim().is_empty() {
                    *slot = company.trim().to_string();
                }
            }
            prop_assert_eq!(report.created + report.updated + report.rejected, rows.len() as u64);
            prop_assert_eq!(report.created + report.updated, valid as u64);
            prop_assert_eq!(report.created, expected.len() as u64);
            let got: HashMap<String, String> = stored.iter().map(|p| (p.email_key(), p.company.clone())).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
