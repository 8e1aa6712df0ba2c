//! How a check's history row stores its phase, its category and its detail: the phase and the
//! category as numbers (the `check_phases` and `check_categories` tables name them in the
//! database), the detail only when it says more than the category and phase do. A history row
//! is written for every check and kept for days, so its bytes are most of a database's size:
//! the names and the usual detail took about a third of a row.
//!
//! Rows written before these numbers keep their names in `phase` and `category` (rewriting
//! them would hold a daemon's start for as long as the history is large); they age out with
//! the history's retention. The view `check_history` reads both forms the same: names, and
//! the detail in full.

use crate::classify::{PROBE_ANSWERED, REFRESHED};
use crate::domain::{Category, Phase};

/// Each phase's number as stored: fixed forever; a new phase takes the next number, in
/// `check_phases` as well.
const PHASES: [(Phase, i64); 2] = [(Phase::Refresh, 1), (Phase::Probe, 2)];

/// Each category's number as stored: fixed forever; a new category takes the next number, in
/// `check_categories` as well. The commonest is 1, which SQLite stores in no bytes at all.
const CATEGORIES: [(Category, i64); 12] = {
    use Category::*;
    [
        (Healthy, 1),
        (Transient, 2),
        (RateLimited, 3),
        (Expired, 4),
        (Revoked, 5),
        (PasswordChanged, 6),
        (AccessChanged, 7),
        (ReconsentRequired, 8),
        (AccountDisabled, 9),
        (RotationLost, 10),
        (ClientMisconfigured, 11),
        (Unknown, 12),
    ]
};

fn number<T: PartialEq + Copy>(table: &[(T, i64)], value: T) -> i64 {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or(0, |(_, n)| *n)
}

pub(super) fn phase_number(phase: Phase) -> i64 {
    number(&PHASES, phase)
}

pub(super) fn category_number(category: Category) -> i64 {
    number(&CATEGORIES, category)
}

/// The detail a healthy check of `phase` always has, which its row need not repeat.
fn usual_detail(phase: Phase, category: Category) -> Option<&'static str> {
    match (phase, category) {
        (Phase::Refresh, Category::Healthy) => Some(REFRESHED),
        (Phase::Probe, Category::Healthy) => Some(PROBE_ANSWERED),
        _ => None,
    }
}

/// The detail to store: none when it is the usual one.
pub(super) fn stored_detail(phase: Phase, category: Category, detail: &str) -> Option<&str> {
    match usual_detail(phase, category) {
        Some(usual) if usual == detail => None,
        _ => Some(detail),
    }
}

/// The rows of `check_phases` and `check_categories` as the migrations should write them.
#[cfg(test)]
pub(super) fn table_rows() -> Vec<String> {
    let phases = PHASES.iter().map(|&(p, n)| {
        let detail = usual_detail(p, Category::Healthy).unwrap_or_default();
        format!("({n}, '{p}', '{detail}')")
    });
    let categories = CATEGORIES.iter().map(|(c, n)| format!("({n}, '{c}')"));
    phases.chain(categories).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<T: Copy>(table: &[(T, i64)], number: i64) -> Option<T> {
        table.iter().find(|(_, n)| *n == number).map(|(v, _)| *v)
    }

    #[test]
    fn every_phase_and_category_has_its_own_number() {
        for &p in Phase::ALL {
            let n = phase_number(p);
            assert!(n > 0, "{p}");
            assert_eq!(named(&PHASES, n), Some(p));
        }
        for &c in Category::ALL {
            let n = category_number(c);
            assert!(n > 0, "{c}");
            assert_eq!(named(&CATEGORIES, n), Some(c));
        }
    }

    #[test]
    fn only_the_usual_detail_of_a_healthy_check_is_left_out() {
        assert_eq!(
            stored_detail(Phase::Refresh, Category::Healthy, REFRESHED),
            None
        );
        assert_eq!(
            stored_detail(Phase::Probe, Category::Healthy, PROBE_ANSWERED),
            None
        );
        let odd = "no refresh token and no probe_url: only the expiry date was checked";
        assert_eq!(
            stored_detail(Phase::Probe, Category::Healthy, odd),
            Some(odd)
        );
        let failed = stored_detail(Phase::Refresh, Category::Expired, REFRESHED);
        assert_eq!(failed, Some(REFRESHED));
    }
}
