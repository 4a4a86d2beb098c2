//! Campaigns, enrollments, sent emails and their links on PostgreSQL.

use async_trait::async_trait;

use super::common::{forget_emails, load_prospect, prospect_id_by_email};
use super::pool::{all, exec, one, pg, Param, Q};
use super::PgStore;
use crate::domain::{now_millis, Campaign, CampaignPatch, Enrollment, EnrollmentKey, EnrollmentPatch, NewCampaign};
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::CampaignStore;
use crate::store::records::{LinkTarget, NewEmail, ProspectRef, SentEmail};
use crate::store::rows::{self, to_json, CAMPAIGN_COLS, ENROLLMENT_COLS};

pub(super) async fn load_campaign(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Campaign> {
    let sql = format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = $1 AND account_id = $2");
    one(c, &sql, &[&id, &account_id], rows::campaign).await?.ok_or(StoreError::NotFound("campaign"))
}

/// An enrollment about to change, locked: two sends to one prospect number their emails one
/// after the other.
async fn lock_enrollment(c: &impl Q, campaign_id: i64, prospect_id: i64) -> StoreResult<Option<Enrollment>> {
    let sql =
        format!("SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = $1 AND prospect_id = $2 FOR UPDATE");
    one(c, &sql, &[&campaign_id, &prospect_id], rows::enrollment).await
}

async fn save_enrollment(c: &impl Q, e: &Enrollment) -> StoreResult<()> {
    let sql = "UPDATE enrollments SET step = $3, step_type = $4, emails_sent = $5, followup_after = $6, mailbox = $7 \
               WHERE campaign_id = $1 AND prospect_id = $2";
    let step_type = e.step_type.map(|t| t.as_str());
    let params: [Param; 7] =
        [&e.campaign_id, &e.prospect_id, &e.step, &step_type, &e.emails_sent, &e.followup_after, &e.mailbox];
    exec(c, sql, &params).await.map(drop)
}

/// The email already recorded under this idempotency key, if any.
async fn prior_email(c: &impl Q, campaign_id: i64, key: &str) -> StoreResult<Option<SentEmail>> {
    let sql = "SELECT id, prospect_id, email_no, sent_at FROM emails WHERE campaign_id = $1 AND idempotency_key = $2";
    let Some(prior) = one(c, sql, &[&campaign_id, &key], rows::prior_email).await? else { return Ok(None) };
    let sql = "SELECT url, honeypot FROM links WHERE email_id = $1 ORDER BY link_no";
    Ok(Some(SentEmail { links: all(c, sql, &[&prior.id], rows::link).await?, ..prior }))
}

#[async_trait]
impl CampaignStore for PgStore {
    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign> {
        let c = self.pool.get().await?;
        let (mailboxes, steps) = (to_json(&new.mailboxes)?, to_json(&new.steps)?);
        let sql = "INSERT INTO campaigns (account_id, name, status, from_name, mailboxes, steps, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";
        let params: [Param; 7] =
            [&account_id, &new.name, &new.status.as_str(), &new.from_name, &mailboxes, &steps, &now_millis()];
        let id = one(&*c, sql, &params, rows::int).await?.ok_or(StoreError::NotFound("campaign"))?;
        load_campaign(&*c, account_id, id).await
    }

    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE account_id = $1 ORDER BY id");
        all(&*c, &sql, &[&account_id], rows::campaign).await
    }

    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign> {
        load_campaign(&*self.pool.get().await?, account_id, id).await
    }

    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let current = load_campaign(&tx, account_id, id).await?;
        let used: Option<i64> = match patch.changes_steps() {
            true => {
                tx.query_one("SELECT max(step) FROM emails WHERE campaign_id = $1", &[&id]).await.map_err(pg)?.get(0)
            }
            false => None,
        };
        let next = patch.apply(current, used)?;
        let (mailboxes, steps) = (to_json(&next.mailboxes)?, to_json(&next.steps)?);
        let sql = "UPDATE campaigns SET name=$2, status=$3, from_name=$4, mailboxes=$5, steps=$6 WHERE id=$1";
        exec(&tx, sql, &[&id, &next.name, &next.status.as_str(), &next.from_name, &mailboxes, &steps]).await?;
        tx.commit().await.map_err(pg)?;
        Ok(next)
    }

    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        load_campaign(&tx, account_id, id).await?;
        forget_emails(&tx, account_id, "SELECT id FROM emails WHERE account_id = $1 AND campaign_id = $2", &id).await?;
        exec(&tx, "DELETE FROM campaigns WHERE id = $1 AND account_id = $2", &[&id, &account_id]).await?;
        tx.commit().await.map_err(pg)
    }

    async fn update_enrollment(&self, account: i64, of: EnrollmentKey, p: EnrollmentPatch) -> StoreResult<Enrollment> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let campaign = load_campaign(&tx, account, of.campaign_id).await?;
        load_prospect(&tx, account, of.prospect_id).await?.ok_or(StoreError::NotFound("prospect"))?;
        let enrollment = lock_enrollment(&tx, of.campaign_id, of.prospect_id).await?;
        let next = p.apply(enrollment.ok_or(StoreError::NotFound("enrollment"))?, &campaign)?;
        save_enrollment(&tx, &next).await?;
        tx.commit().await.map_err(pg)?;
        Ok(next)
    }

    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let campaign = load_campaign(&tx, account_id, email.campaign_id).await?;
        let prospect_id = match &email.prospect {
            ProspectRef::Id(id) => load_prospect(&tx, account_id, *id).await?.map(|p| p.id),
            ProspectRef::Email(e) => prospect_id_by_email(&tx, account_id, e).await?,
        };
        let prospect_id = prospect_id.ok_or(StoreError::NotFound("prospect"))?;
        let enrollment = lock_enrollment(&tx, campaign.id, prospect_id).await?.ok_or_else(|| {
            StoreError::Invalid(format!("prospect {prospect_id} is not enrolled in campaign {}", campaign.id))
        })?;
        if let Some(key) = &email.idempotency_key {
            if let Some(prior) = prior_email(&tx, campaign.id, key).await? {
                return Ok(prior);
            }
        }
        let (step, mailbox) = campaign.email_step_and_mailbox(&enrollment, email.step, email.mailbox)?;
        let sent = enrollment.sent(email.step, step.step_type, mailbox);
        let sql = "INSERT INTO emails (account_id, campaign_id, prospect_id, step, mailbox, email_no, subject, \
                   idempotency_key, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
        let params: [Param; 9] = [
            &account_id,
            &campaign.id,
            &prospect_id,
            &email.step,
            &sent.mailbox,
            &sent.emails_sent,
            &email.subject,
            &email.idempotency_key,
            &email.sent_at,
        ];
        let id: i64 = tx.query_one(sql, &params).await.map_err(pg)?.get(0);
        if !email.links.is_empty() {
            let nos: Vec<i64> = (1..=email.links.len() as i64).collect();
            let urls: Vec<&str> = email.links.iter().map(|l| l.url.as_str()).collect();
            let pots: Vec<bool> = email.links.iter().map(|l| l.honeypot).collect();
            let sql = "INSERT INTO links (email_id, link_no, url, honeypot) \
                       SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bool[])";
            exec(&tx, sql, &[&id, &nos, &urls, &pots]).await?;
        }
        save_enrollment(&tx, &sent).await?;
        super::stats::add_emails(&tx, [(campaign.id, email.step, email.sent_at)]).await?;
        tx.commit().await.map_err(pg)?;
        Ok(SentEmail {
            id,
            prospect_id,
            email_no: sent.emails_sent,
            sent_at: email.sent_at,
            links: email.links,
            replayed: false,
        })
    }

    async fn links_removed(&self) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        one(&*c, "SELECT coalesce(max(id), 0) FROM deletions", &[], rows::int).await.map(Option::unwrap_or_default)
    }

    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>> {
        let c = self.pool.get().await?;
        let sql = "SELECT e.account_id, l.url, l.honeypot FROM links l JOIN emails e ON e.id = l.email_id \
                   WHERE l.email_id = $1 AND l.link_no = $2";
        one(&*c, sql, &[&email_id, &link_no], |r| rows::link_target(r, email_id, link_no)).await
    }
}
