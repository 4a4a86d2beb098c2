//! Campaigns, their ordered steps, enrollments, and the rules of changing them.

use serde::{Deserialize, Serialize};

use super::{wire_enum, Millis, ParseError};

wire_enum!(StepType, "step type" {
    Email = "EMAIL",
    ManualTask = "MANUAL_TASK",
    LinkedinDirectMessage = "LINKEDIN_DIRECT_MESSAGE",
});

wire_enum!(CampaignStatus, "campaign status" {
    Draft = "DRAFT",
    Running = "RUNNING",
    Paused = "PAUSED",
    Stopped = "STOPPED",
    Completed = "COMPLETED",
    Edited = "EDITED",
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(rename = "type")]
    pub step_type: StepType,
    pub track_links: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub status: CampaignStatus,
    pub from_name: String,
    pub mailboxes: Vec<String>,
    pub steps: Vec<Step>,
    pub created_at: Millis,
}

impl Campaign {
    /// Step `n` (from 1), or why there is none.
    pub fn step(&self, n: i64) -> Result<&Step, ParseError> {
        usize::try_from(n - 1).ok().and_then(|i| self.steps.get(i)).ok_or_else(|| {
            ParseError::invalid(format!("step {n} does not exist; campaign {} has {} steps", self.id, self.steps.len()))
        })
    }

    /// Where a sent email belongs: its step must exist; its mailbox, when given, must be one
    /// of the campaign's (any case), else it is the enrollment's, else the campaign's first.
    pub fn email_step_and_mailbox(
        &self,
        enrollment: &Enrollment,
        step: i64,
        mailbox: Option<String>,
    ) -> Result<(&Step, String), ParseError> {
        let found = self.step(step)?;
        let mailbox = match mailbox {
            Some(m) if self.mailboxes.iter().any(|x| x.eq_ignore_ascii_case(&m)) => m,
            Some(m) => return Err(ParseError::invalid(format!("mailbox {m:?} is not one of campaign {}'s", self.id))),
            None => enrollment.mailbox.clone().or_else(|| self.mailboxes.first().cloned()).unwrap_or_default(),
        };
        Ok((found, mailbox))
    }
}

#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub status: CampaignStatus,
    pub from_name: String,
    pub mailboxes: Vec<String>,
    pub steps: Vec<Step>,
}

/// The fields a change to a campaign sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub status: Option<CampaignStatus>,
    pub from_name: Option<String>,
    pub mailboxes: Option<Vec<String>>,
    pub steps: Option<Vec<Step>>,
}

impl CampaignPatch {
    /// Whether applying this patch needs to know the highest step emails were sent from.
    pub fn changes_steps(&self) -> bool {
        self.steps.is_some()
    }

    /// The campaign after this change. Steps that emails were sent from cannot go:
    /// `highest_step_used` is the highest step of any email the campaign sent.
    pub fn apply(self, mut c: Campaign, highest_step_used: Option<i64>) -> Result<Campaign, ParseError> {
        if let Some(v) = self.steps {
            if let Some(used) = highest_step_used.filter(|u| *u > v.len() as i64) {
                return Err(ParseError::invalid(format!(
                    "emails were sent from step {used}; the campaign must keep at least {used} steps"
                )));
            }
            c.steps = v;
        }
        if let Some(v) = self.name {
            c.name = v;
        }
        if let Some(v) = self.status {
            c.status = v;
        }
        if let Some(v) = self.from_name {
            c.from_name = v;
        }
        if let Some(v) = self.mailboxes {
            c.mailboxes = v;
        }
        Ok(c)
    }
}

/// A prospect's place in a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub campaign_id: i64,
    pub prospect_id: i64,
    pub step: Option<i64>,
    pub step_type: Option<StepType>,
    pub emails_sent: i64,
    pub followup_after: Option<Millis>,
    pub mailbox: Option<String>,
    pub stopped: bool,
}

impl Enrollment {
    /// An enrollment before any email was sent.
    pub fn new(key: EnrollmentKey) -> Self {
        Enrollment {
            campaign_id: key.campaign_id,
            prospect_id: key.prospect_id,
            step: None,
            step_type: None,
            emails_sent: 0,
            followup_after: None,
            mailbox: None,
            stopped: false,
        }
    }

    /// The enrollment once an email was sent from `step` through `mailbox`.
    pub fn sent(mut self, step: i64, step_type: StepType, mailbox: String) -> Self {
        self.step = Some(step);
        self.step_type = Some(step_type);
        self.emails_sent += 1;
        self.mailbox = Some(mailbox);
        self
    }
}

/// Which enrollment: a prospect in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentKey {
    pub campaign_id: i64,
    pub prospect_id: i64,
}

#[derive(Debug, Clone, Default)]
pub struct EnrollmentPatch {
    pub step: Option<i64>,
    pub followup_after: Option<Option<Millis>>,
}

impl EnrollmentPatch {
    /// The enrollment after this change; a step must exist in `campaign`.
    pub fn apply(self, mut e: Enrollment, campaign: &Campaign) -> Result<Enrollment, ParseError> {
        if let Some(step) = self.step {
            let s = campaign.step(step)?;
            e.step = Some(step);
            e.step_type = Some(s.step_type);
        }
        if let Some(f) = self.followup_after {
            e.followup_after = f;
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(steps: usize) -> Campaign {
        Campaign {
            id: 3,
            account_id: 1,
            name: "C".into(),
            status: CampaignStatus::Draft,
            from_name: String::new(),
            mailboxes: vec!["a@x.co".into(), "b@x.co".into()],
            steps: vec![Step { step_type: StepType::Email, track_links: true }; steps],
            created_at: 0,
        }
    }

    fn enrollment() -> Enrollment {
        Enrollment::new(EnrollmentKey { campaign_id: 3, prospect_id: 9 })
    }

    #[test]
    fn steps_that_sent_emails_stay() {
        let fewer = || CampaignPatch { steps: Some(vec![]), ..Default::default() };
        assert!(fewer().apply(campaign(2), Some(1)).is_err());
        assert_eq!(fewer().apply(campaign(2), None).unwrap().steps, []);
        let renamed = CampaignPatch { name: Some("D".into()), ..Default::default() }.apply(campaign(2), Some(2));
        assert_eq!(renamed.unwrap().name, "D");
    }

    #[test]
    fn an_email_belongs_to_an_existing_step_and_one_of_the_mailboxes() {
        let c = campaign(1);
        assert!(c.email_step_and_mailbox(&enrollment(), 2, None).is_err());
        assert!(c.email_step_and_mailbox(&enrollment(), 0, None).is_err());
        assert!(c.email_step_and_mailbox(&enrollment(), 1, Some("z@x.co".into())).is_err());
        assert_eq!(c.email_step_and_mailbox(&enrollment(), 1, Some("B@X.CO".into())).unwrap().1, "B@X.CO");
        assert_eq!(c.email_step_and_mailbox(&enrollment(), 1, None).unwrap().1, "a@x.co");
        let e = Enrollment { mailbox: Some("b@x.co".into()), ..enrollment() };
        assert_eq!(c.email_step_and_mailbox(&e, 1, None).unwrap().1, "b@x.co");
    }

    #[test]
    fn an_enrollment_moves_only_to_a_step_that_exists() {
        let c = campaign(2);
        assert!(EnrollmentPatch { step: Some(3), ..Default::default() }.apply(enrollment(), &c).is_err());
        let e = EnrollmentPatch { step: Some(2), followup_after: Some(Some(5)) }.apply(enrollment(), &c).unwrap();
        assert_eq!((e.step, e.step_type, e.followup_after), (Some(2), Some(StepType::Email), Some(5)));
    }

    #[test]
    fn steps_read_their_type_strictly() {
        assert!(serde_json::from_str::<Step>(r#"{"type":"SMS","track_links":true}"#).is_err());
        let s: Step = serde_json::from_str(r#"{"type":"EMAIL","track_links":false}"#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"type":"EMAIL","track_links":false}"#);
    }
}
