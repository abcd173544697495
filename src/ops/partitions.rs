//! The operator's views over every partition (`RELAY_PARTITIONS`). Stream ids repeat across
//! partitions (two webhooks stored in the same millisecond on two partitions both get
//! `<ms>-0`), so once there is more than one partition every id the views show reads
//! `<partition>/<stream id>`; a plain stream id is looked up in every partition and must name
//! one entry. With one partition, nothing changes: ids are plain stream ids.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use crate::config::CommonConfig;
use crate::stream::{Store, StoreError, StreamId};

/// An entry named by an operator: `[<partition>/]<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub partition: Option<usize>,
    pub id: StreamId,
}

impl FromStr for Handle {
    type Err = String;

    fn from_str(s: &str) -> Result<Handle, String> {
        let (partition, id) = match s.split_once('/') {
            Some((p, id)) => {
                let p = p
                    .parse()
                    .map_err(|_| format!("{s:?}: expected <partition>/<ms>-<seq>"))?;
                (Some(p), id)
            }
            None => (None, s),
        };
        let id = id
            .parse()
            .map_err(|_| format!("{s:?} is not an entry id like 1718000000000-0"))?;
        Ok(Handle { partition, id })
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{p}/{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl Handle {
    /// `id`, in no partition in particular.
    pub fn plain(id: StreamId) -> Handle {
        Handle {
            partition: None,
            id,
        }
    }

    /// Where partition `q` resumes a listing newest first after this entry (an exclusive
    /// upper bound). Listings order entries by id, then by partition, both descending: after
    /// `p/<id>` come the older ids of every partition and `<id>` itself in the partitions
    /// numbered below `p`. A plain id resumes below it everywhere.
    pub fn resume_in(&self, q: usize) -> StreamId {
        match self.partition {
            Some(p) if q < p => successor(self.id),
            _ => self.id,
        }
    }
}

/// The id right after `id`: an exclusive bound at it includes `id`.
fn successor(id: StreamId) -> StreamId {
    match id.seq.checked_add(1) {
        Some(seq) => StreamId { ms: id.ms, seq },
        None => StreamId {
            ms: id.ms.saturating_add(1),
            seq: 0,
        },
    }
}

/// What looking a handle up found.
#[derive(Debug)]
pub enum Found<T> {
    Nothing,
    /// In partition `p`, as `id` there.
    One {
        p: usize,
        id: StreamId,
        value: T,
    },
    /// A plain id that names an entry in several partitions: their labels.
    Ambiguous(Vec<String>),
}

/// Every partition's store, in order.
#[derive(Clone)]
pub struct Partitions {
    stores: Vec<Arc<Store>>,
}

impl Partitions {
    /// `stores` in partition order; at least one.
    pub fn new(stores: Vec<Arc<Store>>) -> Partitions {
        assert!(!stores.is_empty(), "at least one partition");
        Partitions { stores }
    }

    /// The configured partitions.
    pub fn open(common: &CommonConfig) -> Result<Partitions, StoreError> {
        let stores = Store::partitions(common)?;
        Ok(Partitions::new(stores.into_iter().map(Arc::new).collect()))
    }

    /// `before`, if it names a partition, names one of these (a listing cannot resume after
    /// an entry of a partition that is not configured); the error says which exist.
    pub fn check_before(&self, before: Option<&Handle>) -> Result<(), String> {
        match before.and_then(|h| h.partition.map(|p| (h, p))) {
            Some((h, p)) if p >= self.stores.len() => Err(format!(
                "before {h}: there is no partition {p} (RELAY_PARTITIONS={}: {})",
                self.stores.len(),
                match self.stores.len() {
                    1 => "only 0".to_owned(),
                    n => format!("0 to {}", n - 1),
                }
            )),
            _ => Ok(()),
        }
    }

    pub fn stores(&self) -> &[Arc<Store>] {
        &self.stores
    }

    pub fn first(&self) -> &Arc<Store> {
        &self.stores[0]
    }

    /// How entry `id` of partition `p` is shown.
    pub fn label(&self, p: usize, id: &str) -> String {
        match self.stores.len() {
            1 => id.to_owned(),
            _ => format!("{p}/{id}"),
        }
    }

    /// The main streams, for messages: `relay:{webhooks}`, or the first and a count.
    pub fn streams(&self) -> String {
        self.describe(Store::stream)
    }

    /// The dead-letter streams, likewise.
    pub fn dlqs(&self) -> String {
        self.describe(Store::dlq)
    }

    fn describe(&self, key: fn(&Store) -> &str) -> String {
        match self.stores.len() {
            1 => key(&self.stores[0]).to_owned(),
            n => format!("{} … ({n} partitions)", key(&self.stores[0])),
        }
    }

    /// Looks `handle` up with `get` in the partition it names, or in every one.
    pub async fn find<T, F, Fut>(&self, handle: &str, get: F) -> Result<Found<T>, StoreError>
    where
        F: Fn(Arc<Store>, StreamId) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        let Ok(h) = handle.parse::<Handle>() else {
            return Ok(Found::Nothing);
        };
        let partitions: Vec<usize> = match h.partition {
            Some(p) if p < self.stores.len() => vec![p],
            Some(_) => return Ok(Found::Nothing),
            None => (0..self.stores.len()).collect(),
        };
        let mut found = Vec::new();
        for p in partitions {
            if let Some(value) = get(self.stores[p].clone(), h.id).await? {
                found.push((p, value));
            }
        }
        Ok(match found.len() {
            0 => Found::Nothing,
            1 => {
                let (p, value) = found.pop().expect("one");
                Found::One { p, id: h.id, value }
            }
            _ => Found::Ambiguous(
                found
                    .iter()
                    .map(|(p, _)| self.label(*p, &h.id.to_string()))
                    .collect(),
            ),
        })
    }
}

/// Merges per-partition lists, each newest first, into one newest first: `(partition, id,
/// item)` by id, ties by partition, both descending (the order `Handle::resume_in` pages
/// through, and the inspector's). A merge, not a sort: the lists are sorted already.
pub fn merge_newest_first<T>(lists: Vec<Vec<(StreamId, T)>>) -> Vec<(usize, StreamId, T)> {
    let total = lists.iter().map(Vec::len).sum();
    let mut heads: Vec<_> = lists
        .into_iter()
        .map(|l| l.into_iter().peekable())
        .collect();
    let mut out = Vec::with_capacity(total);
    loop {
        let mut newest: Option<(usize, StreamId)> = None;
        for (p, head) in heads.iter_mut().enumerate() {
            if let Some((id, _)) = head.peek()
                && newest.is_none_or(|(_, n)| *id >= n)
            {
                newest = Some((p, *id));
            }
        }
        let Some((p, _)) = newest else {
            return out;
        };
        let (id, item) = heads[p].next().expect("peeked above");
        out.push((p, id, item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    #[test]
    fn handles_name_a_partition_or_not() {
        let h: Handle = "2/17-3".parse().unwrap();
        assert_eq!((h.partition, h.id), (Some(2), StreamId { ms: 17, seq: 3 }));
        assert_eq!(h.to_string(), "2/17-3");
        let h: Handle = "17-3".parse().unwrap();
        assert_eq!(h.partition, None);
        assert_eq!(h.to_string(), "17-3");
        assert!("x/17-3".parse::<Handle>().is_err());
        assert!("17".parse::<Handle>().is_err(), "a bare number is no id");
    }

    #[test]
    fn merged_lists_are_newest_first_across_partitions() {
        let merged = merge_newest_first(vec![
            vec![(id(9), "a9"), (id(5), "a5")],
            vec![(id(7), "b7"), (id(5), "b5"), (id(1), "b1")],
        ]);
        let order: Vec<&str> = merged.iter().map(|(_, _, t)| *t).collect();
        assert_eq!(order, ["a9", "b7", "b5", "a5", "b1"]);
        assert_eq!((merged[1].0, merged[1].1), (1, id(7)));
    }

    #[test]
    fn a_page_resumes_between_equal_ids() {
        let at = |p, ms, seq| Handle {
            partition: p,
            id: StreamId { ms, seq },
        };
        let after_1 = at(Some(1), 5, 0);
        // Newest first, 1/5-0 comes after 2/5-0 and before 0/5-0.
        assert_eq!(after_1.resume_in(0), StreamId { ms: 5, seq: 1 });
        assert_eq!(after_1.resume_in(1), id(5));
        assert_eq!(after_1.resume_in(2), id(5));
        assert_eq!(at(None, 5, 0).resume_in(0), id(5), "a plain id: below it");
        let last = at(Some(1), 5, u64::MAX);
        assert_eq!(last.resume_in(0), id(6));
    }

    /// A store that is never connected to (the tests below only name it).
    fn store(s: &str) -> Arc<Store> {
        let keys = crate::stream::Keys {
            stream: s.into(),
            dlq: format!("{s}:dlq"),
        };
        let url = crate::config::Secret::new("redis://127.0.0.1:1");
        Arc::new(Store::new(&url, None, keys).unwrap())
    }

    #[test]
    fn a_listing_resumes_only_in_a_configured_partition() {
        let parts = Partitions::new(vec![store("a"), store("b"), store("c")]);
        let before = |s: &str| s.parse::<Handle>().unwrap();
        assert_eq!(parts.check_before(None), Ok(()));
        assert_eq!(parts.check_before(Some(&before("5-0"))), Ok(()));
        assert_eq!(parts.check_before(Some(&before("2/5-0"))), Ok(()));
        assert_eq!(
            parts.check_before(Some(&before("3/5-0"))),
            Err("before 3/5-0: there is no partition 3 (RELAY_PARTITIONS=3: 0 to 2)".into())
        );
        let one = Partitions::new(vec![store("a")]);
        assert_eq!(one.check_before(Some(&before("0/5-0"))), Ok(()));
        assert_eq!(
            one.check_before(Some(&before("1/5-0"))),
            Err("before 1/5-0: there is no partition 1 (RELAY_PARTITIONS=1: only 0)".into())
        );
    }

    #[tokio::test]
    async fn plain_ids_found_in_two_partitions_are_ambiguous() {
        let parts = Partitions::new(vec![store("a"), store("b"), store("c")]);
        // Partitions 0 and 2 hold 5-0; partition 1 does not.
        let get = |s: Arc<Store>, id: StreamId| async move {
            Ok((s.stream() != "b" && id.ms == 5).then_some(s.stream().to_owned()))
        };
        match parts.find("5-0", get).await.unwrap() {
            Found::Ambiguous(labels) => assert_eq!(labels, ["0/5-0", "2/5-0"]),
            other => panic!("{other:?}"),
        }
        match parts.find("2/5-0", get).await.unwrap() {
            Found::One { p, value, .. } => assert_eq!((p, value.as_str()), (2, "c")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parts.find("1/5-0", get).await.unwrap(),
            Found::Nothing
        ));
        assert!(matches!(
            parts.find("9/5-0", get).await.unwrap(),
            Found::Nothing
        ));
        assert_eq!(parts.label(1, "5-0"), "1/5-0");
        assert_eq!(parts.streams(), "a … (3 partitions)");
    }
}
