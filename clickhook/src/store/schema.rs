//! Schema versions. Each dialect numbers its migrations (`migrations/<dialect>/NNNN_*.sql`),
//! records how many it applied, and applies the rest in order at start.

use std::ops::Range;

/// The migrations still to apply to a database at `version`, of the `known` this binary has.
/// A database newer than this binary is refused: it may hold what this one cannot read.
pub fn pending(version: i64, known: usize) -> anyhow::Result<Range<usize>> {
    let from =
        usize::try_from(version).map_err(|_| anyhow::anyhow!("the database schema version {version} is not valid"))?;
    if from > known {
        anyhow::bail!(
            "the database schema is version {version}, newer than this clickhook (which knows up to {known}); \
             run a newer clickhook or restore a backup"
        );
    }
    Ok(from..known)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pending_migrations() {
        assert_eq!(super::pending(1, 3).unwrap(), 1..3);
        assert_eq!(super::pending(3, 3).unwrap(), 3..3);
        assert!(super::pending(4, 3).unwrap_err().to_string().contains("newer than this clickhook"));
        assert!(super::pending(-1, 3).is_err());
    }
}
