//! Imports that land whole or not at all.
//!
//! An import commits a chunk per transaction: one transaction for a whole file would keep
//! SQLite's single writer from clicks for as long as the file takes. So each chunk journals, in
//! its own transaction, what it changed; ending the import keeps the lot or undoes it, and an
//! import whose process died is undone once no chunk has come for [`ABANDONED_AFTER`]. The
//! journal is append-only: undoing replays it newest first, so a prospect two chunks changed
//! ends with the values it had before the first.

use std::collections::HashSet;

use super::{wire_enum, Millis};

wire_enum!(
    /// Where an import is: writing chunks, or ended and being tidied away.
    ImportState, "import state" {
    Running = "running",
    /// Succeeded: its journal is dropped.
    Kept = "kept",
    /// Failed or abandoned: its journal is replayed backwards, then dropped.
    Undoing = "undoing",
});

wire_enum!(
    /// What a journal entry records a chunk did to a prospect.
    UndoKind, "undo kind" {
    /// Created it: undoing deletes it (with whatever was sent to it since).
    Created = "created",
    /// Overwrote its fields: undoing writes back the values it had.
    Changed = "changed",
    /// Enrolled it in the import's campaign: undoing takes it out again.
    Enrolled = "enrolled",
});

/// An import that no chunk has touched for this long lost its process, and is undone.
pub const ABANDONED_AFTER: Millis = 15 * 60 * 1000;

/// Prospects tidied per transaction: a chunk's worth, so tidying never holds the writer for
/// longer than a chunk of the import did.
pub const TIDY_STEP: i64 = 2000;

/// Running imports last touched before this are abandoned.
pub fn abandoned_before(now: Millis) -> Millis {
    now - ABANDONED_AFTER
}

/// One journal entry: what a chunk did to the prospects `first..=last` (one prospect, but for
/// [`UndoKind::Created`], where a run of ids the chunk created takes one entry: an import of a
/// million new prospects journals a few hundred entries, not a million). `before` (for
/// [`UndoKind::Changed`]) is the prospect's stored values as the store encodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoEntry {
    pub first: i64,
    pub last: i64,
    pub kind: UndoKind,
    pub before: Option<String>,
}

impl UndoEntry {
    fn one(id: i64, kind: UndoKind, before: Option<String>) -> Self {
        UndoEntry { first: id, last: id, kind, before }
    }

    /// A chunk's entries in the order it made the changes: creations, overwrites, enrollments.
    /// `created` are the new ids in the order they were assigned; `before` pairs each
    /// overwritten prospect with its encoded values; `enrolled` lists the enrollments the chunk
    /// added (not those that were there already). A prospect the chunk created needs no entry
    /// for its enrollment: deleting it takes that too.
    pub fn for_chunk(created: &[i64], before: Vec<(i64, String)>, enrolled: &[i64]) -> Vec<UndoEntry> {
        let mut entries: Vec<UndoEntry> = Vec::new();
        for &id in created {
            match entries.last_mut() {
                Some(run) if run.last + 1 == id => run.last = id,
                _ => entries.push(UndoEntry::one(id, UndoKind::Created, None)),
            }
        }
        let new: HashSet<i64> = created.iter().copied().collect();
        entries.extend(before.into_iter().map(|(id, b)| UndoEntry::one(id, UndoKind::Changed, Some(b))));
        entries.extend(
            enrolled.iter().filter(|id| !new.contains(id)).map(|&id| UndoEntry::one(id, UndoKind::Enrolled, None)),
        );
        entries
    }
}

/// How many of `entries` (the newest of a journal, newest first) one step of tidying takes: no
/// more than [`TIDY_STEP`] prospects' worth, and at least one entry.
pub fn step_len<'a>(entries: impl ExactSizeIterator<Item = &'a UndoEntry>) -> usize {
    let n = entries.len();
    let mut prospects = 0;
    let within = entries.take_while(|e| {
        prospects += e.last - e.first + 1;
        prospects <= TIDY_STEP
    });
    within.count().max(1).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_journals_in_the_order_it_wrote_with_runs_of_new_ids() {
        let entries = UndoEntry::for_chunk(&[5, 6, 7, 9], vec![(2, "b".into())], &[2, 5]);
        let kinds: Vec<(i64, i64, UndoKind)> = entries.iter().map(|e| (e.first, e.last, e.kind)).collect();
        use UndoKind::*;
        assert_eq!(kinds, [(5, 7, Created), (9, 9, Created), (2, 2, Changed), (2, 2, Enrolled)]);
        assert_eq!(entries[2].before.as_deref(), Some("b"));
    }

    #[test]
    fn a_step_takes_a_bounded_number_of_prospects() {
        let run = |n: i64| UndoEntry { first: 1, last: n, kind: UndoKind::Created, before: None };
        assert_eq!(step_len([].iter()), 0);
        assert_eq!(step_len([run(TIDY_STEP * 3)].iter()), 1, "a long run still moves");
        assert_eq!(step_len([run(TIDY_STEP / 2), run(TIDY_STEP / 2), run(1)].iter()), 2);
        assert_eq!(step_len(vec![run(1); 3 * TIDY_STEP as usize].iter()), TIDY_STEP as usize);
    }

    #[test]
    fn silence_past_the_limit_is_abandonment() {
        assert_eq!(abandoned_before(ABANDONED_AFTER + 10), 10);
    }
}
