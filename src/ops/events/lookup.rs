//! Finding webhooks: a listing or one webhook in one partition's stream, and the same over
//! every partition (merged newest first, ids labelled `<p>/<id>`: see `ops::partitions`).

use super::{Event, Filter, Listing, PAGE, status_of};
use crate::ops::partitions::{Found, Handle, Partitions, merge_newest_first};
use crate::stream::{Entry, Store, StoreError, StreamId, Summary};

/// The webhooks `filter` selects in every partition, newest first (by id, then partition).
/// Each partition is listed with the same filter from where `filter.before` resumes in it;
/// the merge keeps only what comes before where the most advanced partition stopped (the
/// rest comes with the next page), then the first `limit`. `next` is labelled: it names the
/// partition, since ids repeat across partitions.
pub async fn list(parts: &Partitions, filter: &Filter, now_ms: u64) -> Result<Listing, StoreError> {
    if parts.stores().len() == 1 {
        return list_one(parts.first(), filter, now_ms).await;
    }
    let mut lists = Vec::new();
    // Places in the merged order: (id, partition), newest first = descending.
    let mut cut: Option<(StreamId, usize)> = None;
    let mut complete = true;
    for (q, store) in parts.stores().iter().enumerate() {
        let own = Filter {
            before: filter.before.map(|h| Handle::plain(h.resume_in(q))),
            ..filter.clone()
        };
        let listing = list_one(store, &own, now_ms).await?;
        complete &= listing.complete;
        if let Some(n) = listing.next {
            cut = Some(cut.map_or((n.id, q), |c| c.max((n.id, q))));
        }
        let events = listing.events.into_iter();
        lists.push(events.map(|e| (e.summary.stream_id(), e)).collect());
    }
    let mut events = Vec::new();
    let mut next = cut;
    for (p, id, ev) in merge_newest_first(lists) {
        if cut.is_some_and(|c| (id, p) < c) {
            break;
        }
        if events.len() == filter.limit {
            next = events.last().map(|(p, id, _)| (*id, *p));
            break;
        }
        events.push((p, id, ev));
    }
    Ok(Listing {
        events: events
            .into_iter()
            .map(|(p, _, ev)| labelled(parts, p, ev))
            .collect(),
        complete,
        next: next.map(|(id, p)| Handle {
            partition: Some(p),
            id,
        }),
    })
}

/// One webhook named by `handle` (`[<p>/]<id>`), found in the partition it names or in the
/// only one that has it.
pub async fn show(parts: &Partitions, handle: &str) -> Result<Found<(Event, Entry)>, StoreError> {
    let found = parts
        .find(
            handle,
            |store, id| async move { show_one(&store, id).await },
        )
        .await?;
    Ok(match found {
        Found::One { p, id, value } => Found::One {
            p,
            id,
            value: (labelled(parts, p, value.0), value.1),
        },
        other => other,
    })
}

/// `ev` with its ids as the views show them.
fn labelled(parts: &Partitions, p: usize, mut ev: Event) -> Event {
    let s = &mut ev.summary;
    s.id = parts.label(p, &s.id);
    for copy_of in [&mut s.redelivery_of, &mut s.replay_of] {
        if !copy_of.is_empty() {
            *copy_of = parts.label(p, copy_of);
        }
    }
    ev
}

/// The webhooks `filter` selects, newest first.
pub async fn list_one(store: &Store, filter: &Filter, now_ms: u64) -> Result<Listing, StoreError> {
    let since_ms = filter
        .since
        .map_or(0, |d| now_ms.saturating_sub(d.as_millis() as u64));
    let last_read = store.last_delivered().await?;
    let mut events = Vec::new();
    let mut before = filter.before.map(|h| h.id);
    let mut scanned = 0;
    loop {
        let page = store.page(before, since_ms, PAGE).await?;
        let (Some(newest), Some(oldest)) = (page.first(), page.last()) else {
            return Ok(Listing {
                events,
                complete: true,
                next: None,
            });
        };
        let ids: Vec<StreamId> = page.iter().map(Summary::stream_id).collect();
        let pending = store
            .pending_between(oldest.stream_id(), newest.stream_id(), PAGE)
            .await?;
        let traces = store.traces(&ids).await?;
        let full = page.len() == PAGE;
        before = Some(oldest.stream_id());
        scanned += page.len();
        for ((summary, trace), id) in page.into_iter().zip(traces).zip(&ids) {
            let unread = last_read.is_none_or(|l| *id > l);
            let status = status_of(trace.as_ref(), pending.contains(id), unread);
            if filter.matches(&summary, status) {
                events.push(Event {
                    summary,
                    status,
                    trace,
                    earlier: Vec::new(),
                });
                if events.len() == filter.limit {
                    return Ok(Listing {
                        events,
                        complete: true,
                        next: Some(Handle::plain(*id)),
                    });
                }
            }
        }
        if !full || scanned >= filter.max_scan {
            return Ok(Listing {
                events,
                complete: !full,
                next: full.then_some(before).flatten().map(Handle::plain),
            });
        }
    }
}

/// One webhook: its event and its entry (headers, body), or `None` when it is not (or no
/// longer) in the stream.
pub async fn show_one(
    store: &Store,
    id: StreamId,
) -> Result<Option<(Event, crate::stream::Entry)>, StoreError> {
    let Some(entry) = store.entry(id).await? else {
        return Ok(None);
    };
    let summary = summary_of(&entry);
    let trace = store.traces(&[id]).await?.pop().flatten();
    let pending = store.pending_between(id, id, 1).await?.contains(&id);
    let unread = store.last_delivered().await?.is_none_or(|l| id > l);
    let status = status_of(trace.as_ref(), pending, unread);
    let earlier = match &trace {
        Some(_) => store.earlier_traces(id).await?,
        None => Vec::new(),
    };
    Ok(Some((
        Event {
            summary,
            status,
            trace,
            earlier,
        },
        entry,
    )))
}

fn summary_of(entry: &crate::stream::Entry) -> Summary {
    let text = |name: &str| {
        entry
            .field(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    Summary {
        id: entry.id.clone(),
        relay_id: entry.relay_id(),
        received_at: text("received_at").parse().unwrap_or(0),
        method: text("method"),
        path: text("path"),
        source: text("source"),
        remote: text("remote"),
        redelivery_of: text("redelivery_of"),
        replay_of: text("replay_of"),
        size: entry.field("body").map_or(0, |b| b.len() as u64),
    }
}
