//! [`EventFilter`]: which event kinds reach the inner service.
//!
//! ```
//! use periskope_webhook::{EventFilter, EventKind, KindSet};
//!
//! let tickets: KindSet = [EventKind::TicketCreated, EventKind::TicketUpdated].into_iter().collect();
//! assert!(tickets.accepts(EventKind::TicketUpdated));
//! assert!(!tickets.accepts(EventKind::MessageCreated));
//! assert!(KindSet::all().accepts(EventKind::Unknown));
//!
//! // A whole family, and one more kind.
//! use periskope_webhook::event::Family;
//! let tickets_and_messages = KindSet::family(Family::Ticket).with(EventKind::MessageCreated);
//! assert!(tickets_and_messages.accepts(EventKind::TicketDeleted));
//! ```

use crate::event::{EventKind, Family};

/// Decides whether an event of a given kind reaches the inner service.
///
/// Events it refuses are answered `200 OK` by the middleware, so Periskope does not retry them.
/// Implemented for [`KindSet`] and for closures `Fn(EventKind) -> bool`. The layer keeps it
/// behind a pointer, so its type does not show in the layer's.
pub trait EventFilter: Send + Sync + 'static {
    /// Whether events of `kind` reach the inner service.
    fn accepts(&self, kind: EventKind) -> bool;
}

impl<F> EventFilter for F
where
    F: Fn(EventKind) -> bool + Send + Sync + 'static,
{
    fn accepts(&self, kind: EventKind) -> bool {
        self(kind)
    }
}

/// A set of [`EventKind`]s, [`EventKind::Unknown`] included, as a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindSet(u32);

impl KindSet {
    /// No kind.
    pub const fn empty() -> Self {
        KindSet(0)
    }

    /// Every kind, unknown ones included: the middleware's default.
    pub const fn all() -> Self {
        KindSet(u32::MAX)
    }

    /// Every kind of `family`: `KindSet::family(Family::Ticket)` is `ticket.created`,
    /// `ticket.updated` and `ticket.deleted`. Add other kinds with [`KindSet::with`].
    pub fn family(family: Family) -> Self {
        family.kinds().collect()
    }

    /// This set with `kind` added.
    pub const fn with(self, kind: EventKind) -> Self {
        KindSet(self.0 | bit(kind))
    }

    /// Whether `kind` is in the set.
    pub const fn contains(self, kind: EventKind) -> bool {
        self.0 & bit(kind) != 0
    }
}

impl Default for KindSet {
    fn default() -> Self {
        KindSet::all()
    }
}

impl EventFilter for KindSet {
    fn accepts(&self, kind: EventKind) -> bool {
        self.contains(kind)
    }
}

impl FromIterator<EventKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        iter.into_iter().fold(KindSet::empty(), KindSet::with)
    }
}

const fn bit(kind: EventKind) -> u32 {
    1 << (kind as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_bit() {
        let mut seen = KindSet::empty();
        for kind in EventKind::ALL.into_iter().chain([EventKind::Unknown]) {
            assert!(!seen.contains(kind), "{kind} shares a bit");
            seen = seen.with(kind);
            assert!(seen.contains(kind));
        }
        let only_unknown = KindSet::empty().with(EventKind::Unknown);
        assert!(EventKind::ALL.iter().all(|kind| !only_unknown.contains(*kind)));
    }

    #[test]
    fn a_family_set_holds_exactly_the_kinds_of_that_family() {
        for family in EventKind::ALL.into_iter().filter_map(EventKind::family) {
            let set = KindSet::family(family);
            for kind in EventKind::ALL.into_iter().chain([EventKind::Unknown]) {
                assert_eq!(set.contains(kind), kind.family() == Some(family), "{kind} in {family:?}");
            }
        }
        let tickets = KindSet::family(Family::Ticket);
        assert!(tickets.contains(EventKind::TicketCreated));
        assert!(tickets.contains(EventKind::TicketUpdated));
        assert!(tickets.contains(EventKind::TicketDeleted));
        assert!(!tickets.contains(EventKind::MessageTicketAttached));
    }
}
