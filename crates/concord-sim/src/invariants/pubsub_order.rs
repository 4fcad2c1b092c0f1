//! Pub/sub (DESIGN §8.4, `--pubsub`): a subscriber gets each message at most once, and the
//! messages of one publisher in publish order — across partitions, crashes and restarts (a
//! restarted publisher numbers from 1 again, as a new incarnation). Lost messages are allowed:
//! delivery is at most once. A message reaches a region after the writes its publisher made
//! before it (`PeerMessage::after`): a subscriber woken by it reads them.

use crate::history::History;
use std::collections::BTreeMap;

pub fn check(history: &History, names: &[String]) -> Vec<String> {
    let mut last: BTreeMap<(usize, u64, String), u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (to, to_incarnation, payload) in &history.pubsub_received {
        let mut parts = payload.rsplitn(2, ':');
        let (Some(n), Some(publisher)) = (parts.next(), parts.next()) else {
            out.push(format!(
                "{} got a message not from the workload: {payload:?}",
                names[*to]
            ));
            continue;
        };
        let Ok(n) = n.parse::<u64>() else {
            out.push(format!(
                "{} got a message not from the workload: {payload:?}",
                names[*to]
            ));
            continue;
        };
        let key = (*to, *to_incarnation, publisher.to_string());
        let seen = last.entry(key).or_insert(0);
        if n <= *seen {
            out.push(format!(
                "{} (incarnation {to_incarnation}) got message {n} of publisher {publisher} after message {seen}: {}",
                names[*to],
                if n == *seen { "a duplicate" } else { "out of order" }
            ));
        }
        *seen = (*seen).max(n);
    }
    for (to, payload, had) in &history.pubsub_early {
        let after = history.pubsub_after[payload];
        out.push(format!(
            "{} got message {payload:?} before the write it follows ({after}; it had applied that writer up to {had})",
            names[*to]
        ));
    }
    out.truncate(5);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_reordering_fail_gaps_do_not() {
        let names = vec!["us".to_string(), "eu".to_string()];
        let run = |got: &[(usize, u64, &str)]| {
            let mut h = History::new(2);
            h.pubsub_received = got.iter().map(|(r, i, p)| (*r, *i, p.to_string())).collect();
            check(&h, &names)
        };
        assert!(run(&[(1, 1, "0:1:1"), (1, 1, "0:1:3"), (1, 1, "0:2:1")]).is_empty());
        assert!(
            run(&[(1, 1, "0:1:1"), (1, 2, "0:1:1")]).is_empty(),
            "a restarted subscriber"
        );
        assert!(run(&[(1, 1, "0:1:2"), (1, 1, "0:1:2")])[0].contains("a duplicate"));
        assert!(run(&[(1, 1, "0:1:3"), (1, 1, "0:1:2")])[0].contains("out of order"));
    }
}
