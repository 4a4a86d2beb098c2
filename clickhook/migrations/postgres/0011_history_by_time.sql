-- The burst history is read by time, for every email at once, when a settler starts its turn
-- (click::recent); afterwards the settler keeps it in memory. An index by email put each judged
-- click on its email's leaf page, so a round of judgements dirtied a page per email clicked;
-- by time, they go on the last page.

DROP INDEX IF EXISTS email_clicks_email;
CREATE INDEX IF NOT EXISTS email_clicks_at ON email_clicks(at);
