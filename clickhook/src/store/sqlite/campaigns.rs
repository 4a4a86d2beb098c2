//! Campaigns, enrollments, sent emails and their links on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::common::{forget_emails, load_enrollment, load_prospect, prospect_id_by_email};
use super::sql::{all, exec, one, value};
use super::SqliteStore;
use crate::domain::{now_millis, Campaign, CampaignPatch, Enrollment, EnrollmentKey, EnrollmentPatch, NewCampaign};
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::CampaignStore;
use crate::store::records::{LinkTarget, NewEmail, NewLink, ProspectRef, SentEmail};
use crate::store::rows::{self, to_json, CAMPAIGN_COLS};

pub(super) fn load_campaign(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Campaign> {
    let sql = format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = ?1 AND account_id = ?2");
    one(conn, &sql, [id, account_id], rows::campaign)?.ok_or(StoreError::NotFound("campaign"))
}

fn save_enrollment(conn: &Connection, e: &Enrollment) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE enrollments SET step = ?3, step_type = ?4, emails_sent = ?5, followup_after = ?6, mailbox = ?7 \
         WHERE campaign_id = ?1 AND prospect_id = ?2",
        params![
            e.campaign_id,
            e.prospect_id,
            e.step,
            e.step_type.map(|t| t.as_str()),
            e.emails_sent,
            e.followup_after,
            e.mailbox
        ],
    )
    .map(drop)
}

fn email_links(conn: &Connection, email_id: i64) -> StoreResult<Vec<NewLink>> {
    all(conn, "SELECT url, honeypot FROM links WHERE email_id = ?1 ORDER BY link_no", [email_id], rows::link)
}

/// The email already recorded under this idempotency key, if any.
fn prior_email(conn: &Connection, campaign_id: i64, key: &str) -> StoreResult<Option<SentEmail>> {
    let sql = "SELECT id, prospect_id, email_no, sent_at FROM emails WHERE campaign_id = ?1 AND idempotency_key = ?2";
    let Some(prior) = one(conn, sql, params![campaign_id, key], rows::prior_email)? else { return Ok(None) };
    Ok(Some(SentEmail { links: email_links(conn, prior.id)?, ..prior }))
}

#[async_trait]
impl CampaignStore for SqliteStore {
    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign> {
        self.write(move |conn| {
            exec(
                conn,
                "INSERT INTO campaigns (account_id, name, status, from_name, mailboxes, steps, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    account_id,
                    new.name,
                    new.status.as_str(),
                    new.from_name,
                    to_json(&new.mailboxes)?,
                    to_json(&new.steps)?,
                    now_millis()
                ],
            )?;
            load_campaign(conn, account_id, conn.last_insert_rowid())
        })
        .await
    }

    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE account_id = ?1 ORDER BY id");
            all(conn, &sql, [account_id], rows::campaign)
        })
        .await
    }

    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign> {
        self.read(move |conn| load_campaign(conn, account_id, id)).await
    }

    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign> {
        self.write(move |conn| {
            let current = load_campaign(conn, account_id, id)?;
            let used = match patch.changes_steps() {
                true => value(conn, "SELECT max(step) FROM emails WHERE campaign_id = ?1", [id])?,
                false => None,
            };
            let c = patch.apply(current, used)?;
            exec(
                conn,
                "UPDATE campaigns SET name=?2, status=?3, from_name=?4, mailboxes=?5, steps=?6 WHERE id=?1",
                params![id, c.name, c.status.as_str(), c.from_name, to_json(&c.mailboxes)?, to_json(&c.steps)?],
            )?;
            Ok(c)
        })
        .await
    }

    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            load_campaign(conn, account_id, id)?;
            forget_emails(conn, account_id, "SELECT id FROM emails WHERE account_id = ?1 AND campaign_id = ?2", &id)?;
            exec(conn, "DELETE FROM campaigns WHERE id = ?1 AND account_id = ?2", [id, account_id]).map(drop)
        })
        .await
    }

    async fn update_enrollment(&self, account: i64, of: EnrollmentKey, p: EnrollmentPatch) -> StoreResult<Enrollment> {
        self.write(move |conn| {
            let campaign = load_campaign(conn, account, of.campaign_id)?;
            load_prospect(conn, account, of.prospect_id)?.ok_or(StoreError::NotFound("prospect"))?;
            let current =
                load_enrollment(conn, of.campaign_id, of.prospect_id)?.ok_or(StoreError::NotFound("enrollment"))?;
            let e = p.apply(current, &campaign)?;
            save_enrollment(conn, &e)?;
            Ok(e)
        })
        .await
    }

    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail> {
        self.write(move |conn| {
            let campaign = load_campaign(conn, account_id, email.campaign_id)?;
            let prospect_id = match &email.prospect {
                ProspectRef::Id(id) => load_prospect(conn, account_id, *id)?.map(|p| p.id),
                ProspectRef::Email(e) => prospect_id_by_email(conn, account_id, e)?,
            }
            .ok_or(StoreError::NotFound("prospect"))?;
            let enrollment = load_enrollment(conn, campaign.id, prospect_id)?.ok_or_else(|| {
                StoreError::Invalid(format!("prospect {prospect_id} is not enrolled in campaign {}", campaign.id))
            })?;
            if let Some(key) = &email.idempotency_key {
                if let Some(prior) = prior_email(conn, campaign.id, key)? {
                    return Ok(prior);
                }
            }
            let (step, mailbox) = campaign.email_step_and_mailbox(&enrollment, email.step, email.mailbox)?;
            let enrollment = enrollment.sent(email.step, step.step_type, mailbox);
            exec(
                conn,
                // Never an id used before (migration 0011): old links name emails by id.
                "INSERT INTO emails (id, account_id, campaign_id, prospect_id, step, mailbox, email_no, subject, \
                 idempotency_key, sent_at) VALUES ((SELECT last + 1 FROM id_floor WHERE name = 'emails'), \
                 ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    account_id,
                    campaign.id,
                    prospect_id,
                    email.step,
                    enrollment.mailbox,
                    enrollment.emails_sent,
                    email.subject,
                    email.idempotency_key,
                    email.sent_at
                ],
            )?;
            let id = conn.last_insert_rowid();
            for (i, l) in email.links.iter().enumerate() {
                let sql = "INSERT INTO links (email_id, link_no, url, honeypot) VALUES (?1, ?2, ?3, ?4)";
                exec(conn, sql, params![id, i as i64 + 1, l.url, l.honeypot])?;
            }
            save_enrollment(conn, &enrollment)?;
            super::stats::add_emails(conn, [(campaign.id, email.step, email.sent_at)])?;
            let email_no = enrollment.emails_sent;
            Ok(SentEmail { id, prospect_id, email_no, sent_at: email.sent_at, links: email.links, replayed: false })
        })
        .await
    }

    async fn links_removed(&self) -> StoreResult<i64> {
        self.read(|conn| value(conn, "SELECT coalesce(max(id), 0) FROM deletions", [])).await
    }

    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>> {
        self.read(move |conn| {
            let sql = "SELECT e.account_id, l.url, l.honeypot FROM links l JOIN emails e ON e.id = l.email_id \
                       WHERE l.email_id = ?1 AND l.link_no = ?2";
            one(conn, sql, [email_id, link_no], |r| rows::link_target(r, email_id, link_no))
        })
        .await
    }
}
