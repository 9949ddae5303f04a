//! Requests in flight from this node, per peer and protocol: each takes a slot, at most
//! [`MAX_CONCURRENT_STREAMS`] to one peer on one protocol.

use crate::Channel;
use crate::protocol::MAX_CONCURRENT_STREAMS;
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Slots for requests in flight, per peer and protocol.
pub(crate) type InFlight = HashMap<(PeerId, Channel), Arc<Semaphore>>;

/// A request's place among those in flight to one peer on one protocol. However the request
/// ends (answered, failed, timed out waiting, or its caller gone), dropping this frees the place,
/// and a peer with nothing in flight any more leaves the map, so it does not grow with every
/// peer ever asked.
pub(crate) struct Slot {
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    pub(crate) slots: Arc<Semaphore>,
    key: (PeerId, Channel),
    map: Arc<Mutex<InFlight>>,
}

impl Slot {
    pub(crate) fn take(map: &Arc<Mutex<InFlight>>, key: (PeerId, Channel)) -> Self {
        let slots = map
            .lock()
            .expect("in-flight lock")
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_CONCURRENT_STREAMS)))
            .clone();
        Self { permit: None, slots, key, map: map.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.permit.take();
        // A poisoned map (a panic while it was held) is left as it is.
        let Ok(mut map) = self.map.lock() else { return };
        // Only the map and this slot hold the semaphore, and no permit is out: nobody waits.
        if Arc::strong_count(&self.slots) == 2
            && self.slots.available_permits() == MAX_CONCURRENT_STREAMS
            && map.get(&self.key).is_some_and(|s| Arc::ptr_eq(s, &self.slots))
        {
            map.remove(&self.key);
        }
    }
}
