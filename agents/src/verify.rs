//! Deterministic verification by commit and reveal: the requestor's verdict on which providers'
//! results agree, before anything is paid.
//!
//! When its run ends, each provider commits to its results folder's `h1:` digest without showing
//! it: `hash = sha256(job ‖ digest)`, which equal results share, and
//! `seal = sha256(provider ‖ job ‖ digest)`, which binds the result to the provider (iExec's
//! Proof-of-Contribution). The requestor groups the commitments by `hash` and decides by
//! Bacalhau's rules; only the winners reveal their digest, which must open both their hash and
//! their seal. A provider that replays another's commitment has a seal that is not its own, so it
//! can never open it, and a second copy of a seal already seen loses at once.
//!
//! Parts are joined with a NUL byte: neither job ids nor `h1:` digests hold one, so no two
//! different inputs hash alike.

use alloy_primitives::Address;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// A provider's commitment to its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commitment {
    pub provider: Address,
    /// `sha256(job ‖ digest)`; `None` when the provider has no result to commit to.
    pub hash: Option<[u8; 32]>,
    /// `sha256(provider ‖ job ‖ digest)`.
    pub seal: [u8; 32],
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(part);
    }
    h.finalize().into()
}

/// What `provider` commits to for `digest`, the `h1:` hash of its results folder for `job`.
pub fn commit(job: &str, provider: Address, digest: &str) -> Commitment {
    Commitment {
        provider,
        hash: Some(sha256(&[job.as_bytes(), digest.as_bytes()])),
        seal: sha256(&[provider.as_slice(), job.as_bytes(), digest.as_bytes()]),
    }
}

/// Why a provider is not paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// Its result differs from the verified one.
    Outvoted,
    /// No result verified: a single result, a tie, or too few alike.
    NoVerdict,
    /// It committed to no result.
    NoResult,
    /// Its seal is another provider's: it copied a commitment.
    Replayed,
    /// Its reveal does not open its commitment.
    BadReveal,
}

/// Why no result is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoVerdict {
    /// Fewer than two results: a single result is never verified.
    TooFew,
    /// The largest groups of equal results are of the same size.
    Tie,
    /// The largest group has fewer members than the job's `confidence`.
    ConfidenceNotMet { largest: usize, confidence: usize },
}

/// The requestor's decision on a job's commitments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The providers whose results agree, and the hash they share; empty when `undecided`.
    pub winners: Vec<Address>,
    pub hash: Option<[u8; 32]>,
    /// Everyone else, with why.
    pub losers: Vec<(Address, Loss)>,
    pub undecided: Option<NoVerdict>,
}

/// Decides by Bacalhau's rules: a single result is never verified; a tie between the largest
/// groups verifies nobody; the winning group has at least `confidence` members (and at least two);
/// an empty commitment never wins. A seal seen twice is a replay: only its first holder keeps it.
pub fn decide(commitments: &[Commitment], confidence: usize) -> Verdict {
    let mut losers = Vec::new();
    let mut seals = BTreeSet::new();
    let mut groups: BTreeMap<[u8; 32], Vec<Address>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for c in commitments {
        if !seen.insert(c.provider) {
            continue;
        }
        if !seals.insert(c.seal) {
            losers.push((c.provider, Loss::Replayed));
            continue;
        }
        match c.hash {
            None => losers.push((c.provider, Loss::NoResult)),
            Some(hash) => groups.entry(hash).or_default().push(c.provider),
        }
    }
    let results: usize = groups.values().map(Vec::len).sum();
    let largest = groups.values().map(Vec::len).max().unwrap_or(0);
    let at_largest = groups.values().filter(|g| g.len() == largest).count();
    // With two results or more, a largest group of one is always a tie.
    let undecided = if results < 2 {
        Some(NoVerdict::TooFew)
    } else if at_largest > 1 {
        Some(NoVerdict::Tie)
    } else if largest < confidence {
        Some(NoVerdict::ConfidenceNotMet { largest, confidence })
    } else {
        None
    };
    let winner = undecided.is_none().then(|| groups.iter().find(|(_, g)| g.len() == largest)).flatten();
    let (hash, winners) = match winner {
        Some((hash, members)) => (Some(*hash), members.clone()),
        None => (None, Vec::new()),
    };
    for (h, members) in &groups {
        if Some(*h) != hash {
            let loss = if undecided.is_some() { Loss::NoVerdict } else { Loss::Outvoted };
            losers.extend(members.iter().map(|m| (*m, loss.clone())));
        }
    }
    Verdict { winners, hash, losers, undecided }
}

/// Whether a winner's revealed `digest` opens its commitment: its hash and its own seal.
pub fn reveal_opens(job: &str, commitment: &Commitment, digest: &str) -> bool {
    let expected = commit(job, commitment.provider, digest);
    commitment.hash == expected.hash && commitment.seal == expected.seal
}

/// A provider's reputation after a run: +1 when verified, ×2/3 when it failed (iExec's rule).
pub fn reputation_after(reputation: f64, verified: bool) -> f64 {
    if verified { reputation + 1.0 } else { reputation * 2.0 / 3.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "job-1";

    fn provider(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    /// `good` providers with the right digest, then `bad` ones with a digest of their own each.
    fn run(good: u8, bad: u8) -> Vec<Commitment> {
        (0..good)
            .map(|i| commit(JOB, provider(i + 1), "h1:good"))
            .chain((0..bad).map(|i| commit(JOB, provider(100 + i), &format!("h1:bad-{i}"))))
            .collect()
    }

    fn paid(v: &Verdict) -> usize {
        v.winners.len()
    }

    #[test]
    fn bacalhaus_verifier_matrix() {
        // nodes, bad, confidence → paid
        let one = decide(&run(1, 0), 0);
        assert_eq!((paid(&one), one.undecided), (0, Some(NoVerdict::TooFew)));
        let three = decide(&run(3, 0), 0);
        assert_eq!((paid(&three), three.losers.len()), (3, 0));
        let one_bad = decide(&run(2, 1), 0);
        assert_eq!(paid(&one_bad), 2);
        assert_eq!(one_bad.losers, vec![(provider(100), Loss::Outvoted)]);
        let tie = decide(&run(1, 1), 0);
        assert_eq!((paid(&tie), tie.undecided), (0, Some(NoVerdict::Tie)));
        assert!(tie.losers.iter().all(|(_, l)| *l == Loss::NoVerdict));
        let unmet = decide(&run(3, 2), 4);
        assert_eq!(
            (paid(&unmet), unmet.undecided),
            (0, Some(NoVerdict::ConfidenceNotMet { largest: 3, confidence: 4 }))
        );
    }

    #[test]
    fn bad_providers_that_agree_with_each_other_still_lose_to_a_larger_group() {
        let mut c = run(3, 0);
        c.push(commit(JOB, provider(100), "h1:wrong"));
        c.push(commit(JOB, provider(101), "h1:wrong"));
        let v = decide(&c, 2);
        assert_eq!(v.winners, vec![provider(1), provider(2), provider(3)]);
        assert_eq!(v.hash, commit(JOB, provider(1), "h1:good").hash);
    }

    #[test]
    fn a_replayed_commitment_loses_and_cannot_be_opened() {
        let honest = commit(JOB, provider(1), "h1:good");
        let copied = Commitment { provider: provider(9), ..honest };
        let v = decide(&[honest, commit(JOB, provider(2), "h1:good"), copied], 2);
        assert_eq!(v.winners, vec![provider(1), provider(2)]);
        assert_eq!(v.losers, vec![(provider(9), Loss::Replayed)]);
        // Even where the copy came first, its holder cannot open it with the digest.
        assert!(reveal_opens(JOB, &honest, "h1:good"));
        assert!(!reveal_opens(JOB, &copied, "h1:good"));
        assert!(!reveal_opens(JOB, &honest, "h1:other"));
        assert!(!reveal_opens("job-2", &honest, "h1:good"));
    }

    #[test]
    fn an_empty_commitment_never_wins() {
        let empty = |n| Commitment { provider: provider(n), hash: None, seal: [n; 32] };
        let v = decide(&[empty(1), empty(2), empty(3)], 0);
        assert_eq!((paid(&v), v.undecided), (0, Some(NoVerdict::TooFew)));
        let v = decide(&[empty(1), commit(JOB, provider(2), "h1:a"), commit(JOB, provider(3), "h1:a")], 2);
        assert_eq!(v.winners, vec![provider(2), provider(3)]);
        assert_eq!(v.losers, vec![(provider(1), Loss::NoResult)]);
    }

    #[test]
    fn reputation_grows_by_one_and_shrinks_by_a_third() {
        assert_eq!(reputation_after(2.0, true), 3.0);
        assert_eq!(reputation_after(3.0, false), 2.0);
    }
}
