//! Write identities are never reused (DESIGN §8.1): no `(writer, seq)` is seen — applied or
//! written anywhere, in any incarnation — with two different contents.

use crate::history::History;

pub fn check(history: &History) -> Vec<String> {
    history.dot_reuse.clone()
}
