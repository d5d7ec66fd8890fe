//! Receive-side flow control for client channels (a lazytunnel patch on russh 0.65.1; what and
//! why: `vendor/russh-PATCH.md` in the lazytunnel repository).
//!
//! OpenSSH's model (channels.c, `channel_check_window`): a channel's receive window is
//! replenished only as its consumer takes data, never when data arrives, so a consumer that
//! falls behind stops only its own channel's sender. The session loop never waits for a
//! consumer: a message that finds the channel's queue full waits in that channel's backlog,
//! which the window bounds.
//!
//! Every queued message is charged its payload plus [`MESSAGE_OVERHEAD`] against the channel's
//! reservation, so a peer sending a flood of tiny messages cannot hold more memory than the
//! window allows; small payloads are merged in the backlog so that such a flood still moves.
//! A [`WindowBudget`] shared by sessions bounds the sum of all reservations.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use crate::{ChannelId, ChannelMsg};

/// What a queued message costs beyond its payload: the queue slot, the message and the
/// payload's allocation.
pub const MESSAGE_OVERHEAD: usize = 128;

/// Payloads are merged in the backlog while the merged one stays below this.
const MERGE_BELOW: usize = 16 * 1024;

/// Bytes that all channels sharing it may hold for their consumers, in total: data queued or
/// held unconsumed plus what their peers may still send. A channel always keeps a floor of
/// one maximum packet so that it can never deadlock; the floors may overdraw the budget, and
/// windows then shrink towards their floor as their consumers catch up.
#[derive(Debug)]
pub struct WindowBudget {
    capacity: usize,
    available: AtomicI64,
}

impl WindowBudget {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            available: AtomicI64::new(i64::try_from(capacity).unwrap_or(i64::MAX)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What is not reserved by any channel; negative while floors overdraw the budget.
    pub fn available(&self) -> i64 {
        self.available.load(Ordering::SeqCst)
    }

    /// Reserves up to `want` bytes, and at least `floor` (which may overdraw).
    pub(crate) fn take(&self, want: u32, floor: u32) -> u32 {
        let floor = floor.min(want);
        let mut current = self.available.load(Ordering::SeqCst);
        loop {
            let free = u32::try_from(current.max(0)).unwrap_or(u32::MAX);
            let grant = want.min(free).max(floor);
            match self.available.compare_exchange_weak(
                current,
                current - i64::from(grant),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return grant,
                Err(now) => current = now,
            }
        }
    }

    pub(crate) fn give_back(&self, bytes: u32) {
        self.available
            .fetch_add(i64::from(bytes), Ordering::SeqCst);
    }
}

/// The session's side of the wake-ups: which channels have something to settle.
#[derive(Debug, Default)]
pub(crate) struct FlowWake {
    pub(crate) notify: Notify,
    dirty: Mutex<Vec<ChannelId>>,
}

impl FlowWake {
    pub(crate) fn take_dirty(&self) -> Vec<ChannelId> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Shared by a channel's reader and its session: what the reader has consumed since the
/// session last settled the channel.
#[derive(Debug, Default)]
pub(crate) struct ReceiveFlow {
    /// Set when the session registers the channel; until then (and on the server side) the
    /// reader has nobody to tell.
    session: OnceLock<(Arc<FlowWake>, ChannelId)>,
    /// Payload bytes consumed, not yet settled.
    consumed: AtomicUsize,
    /// Messages taken off the queue, not yet settled.
    taken: AtomicUsize,
    /// Consumption is reported by a [`WindowConsumer`] rather than counted when taken.
    manual: AtomicBool,
    /// The session holds messages that did not fit in the queue.
    backlogged: AtomicBool,
    /// Charged bytes whose consumption is worth settling (a window adjust).
    threshold: AtomicUsize,
    /// The channel is in its session's dirty list already.
    marked: AtomicBool,
}

impl ReceiveFlow {
    /// The reader took `msg` off the queue.
    pub(crate) fn taken(&self, msg: &ChannelMsg) {
        self.taken.fetch_add(1, Ordering::SeqCst);
        if !self.manual.load(Ordering::Relaxed) {
            self.consumed.fetch_add(payload_len(msg), Ordering::SeqCst);
        }
        self.wake_if_due(false);
    }

    /// The reader found the queue empty.
    pub(crate) fn starved(&self) {
        self.wake_if_due(true);
    }

    fn consumed(&self, bytes: usize) {
        self.consumed.fetch_add(bytes, Ordering::SeqCst);
        self.wake_if_due(false);
    }

    fn wake_if_due(&self, starved: bool) {
        let Some((wake, id)) = self.session.get() else {
            return;
        };
        let charged = self.consumed.load(Ordering::SeqCst)
            + self.taken.load(Ordering::SeqCst) * MESSAGE_OVERHEAD;
        let backlogged = self.backlogged.load(Ordering::SeqCst);
        let due = backlogged || charged >= self.threshold.load(Ordering::SeqCst).max(1);
        if due && !(starved && !backlogged) {
            self.mark(wake, *id);
        }
    }

    /// The reader is gone: the session is to drop what it holds for it, and a channel the
    /// peer has closed can go (else it would wait for a reader that never comes).
    pub(crate) fn reader_gone(&self) {
        if let Some((wake, id)) = self.session.get() {
            self.mark(wake, *id);
        }
    }

    fn mark(&self, wake: &FlowWake, id: ChannelId) {
        if self.marked.swap(true, Ordering::SeqCst) {
            return;
        }
        wake.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
        wake.notify.notify_one();
    }
}

/// Reports what the consumer of a channel has really consumed (for a forwarder: written to
/// its socket), so that the window follows the consumer rather than the queue. Obtained with
/// [`crate::ChannelReadHalf::consume_manually`].
#[derive(Debug, Clone)]
pub struct WindowConsumer(pub(crate) Arc<ReceiveFlow>);

impl WindowConsumer {
    /// `bytes` of data taken from the channel have been consumed.
    pub fn consumed(&self, bytes: usize) {
        self.0.consumed(bytes);
    }
}

impl ReceiveFlow {
    pub(crate) fn set_manual(&self) {
        self.manual.store(true, Ordering::SeqCst);
    }
}

/// The session's side of one channel: the backlog and the window accounting.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    backlog: VecDeque<ChannelMsg>,
    /// Charged bytes (payload plus overhead per message) queued, backlogged or held by the
    /// consumer, not yet consumed.
    held: usize,
    /// What this channel may have outstanding: held plus what the peer may still send.
    reservation: u32,
    budget: Option<Arc<WindowBudget>>,
    /// The peer closed the channel; it goes once the backlog is delivered.
    pub(crate) closing: bool,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.reservation);
        }
    }
}

/// What [`Inbox::settle`] needs to know about the channel's window.
pub(crate) struct Window {
    /// What the peer may still send (the window we have granted, less what it used).
    pub(crate) peer: u32,
    /// The window a channel grows to when the budget allows.
    pub(crate) target: u32,
    /// The least a channel keeps: one maximum packet.
    pub(crate) floor: u32,
}

impl Inbox {
    /// Starts the accounting of a channel that granted `window` at its opening, reserved from
    /// `budget`.
    pub(crate) fn open(
        &mut self,
        flow: &ReceiveFlow,
        wake: &Arc<FlowWake>,
        id: ChannelId,
        window: u32,
        budget: Option<Arc<WindowBudget>>,
    ) {
        let _ = flow.session.set((wake.clone(), id));
        self.reservation = window;
        self.budget = budget;
        self.set_threshold(flow);
    }

    /// Queues `msg` for the channel's reader without waiting: into its queue while there is
    /// room and nothing is backlogged, else into the backlog.
    pub(crate) fn deliver(&mut self, queue: &Sender<ChannelMsg>, flow: &ReceiveFlow, msg: ChannelMsg) {
        let charge = payload_len(&msg) + MESSAGE_OVERHEAD;
        let msg = if self.backlog.is_empty() {
            match queue.try_send(msg) {
                Ok(()) => {
                    self.held += charge;
                    return;
                }
                // The reader is gone: nobody will consume it.
                Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(msg)) => msg,
            }
        } else {
            msg
        };
        self.held += charge;
        // Runs of one stream merge: data with data, extended data with the same stream's.
        let run = match (self.backlog.back_mut(), &msg) {
            (Some(ChannelMsg::Data { data: last }), ChannelMsg::Data { data }) => Some((last, data)),
            (
                Some(ChannelMsg::ExtendedData { data: last, ext: last_ext }),
                ChannelMsg::ExtendedData { data, ext },
            ) if last_ext == ext => Some((last, data)),
            _ => None,
        };
        if let Some((last, data)) = run
            && last.len() + data.len() < MERGE_BELOW
        {
            let mut merged = BytesMut::with_capacity(last.len() + data.len());
            merged.extend_from_slice(last);
            merged.extend_from_slice(data);
            *last = merged.freeze();
            self.held -= MESSAGE_OVERHEAD;
        } else {
            self.backlog.push_back(msg);
        }
        // Set before the retry: a reader that empties the queue from now on sees it and
        // wakes the session; one that emptied it before leaves room for the retry.
        flow.backlogged.store(true, Ordering::SeqCst);
        self.refill(queue, flow);
    }

    /// Moves backlogged messages into the queue while it has room.
    fn refill(&mut self, queue: &Sender<ChannelMsg>, flow: &ReceiveFlow) {
        while let Some(msg) = self.backlog.pop_front() {
            match queue.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    self.backlog.push_front(msg);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
        flow.backlogged.store(false, Ordering::SeqCst);
    }

    /// Takes in what the reader consumed, refills its queue, and returns the window adjust to
    /// send, if any: OpenSSH's rule, once the peer's window is below half the reservation or
    /// more than three packets can be granted.
    pub(crate) fn settle(
        &mut self,
        queue: &Sender<ChannelMsg>,
        flow: &ReceiveFlow,
        window: Option<Window>,
    ) -> Option<u32> {
        // Cleared first: consumption after the swaps below marks the channel again.
        flow.marked.store(false, Ordering::SeqCst);
        let consumed = flow.consumed.swap(0, Ordering::SeqCst);
        let taken = flow.taken.swap(0, Ordering::SeqCst);
        self.held = self
            .held
            .saturating_sub(consumed + taken * MESSAGE_OVERHEAD);
        if !self.backlog.is_empty() {
            self.refill(queue, flow);
        }
        let window = window?;
        let outstanding = u32::try_from(self.held)
            .unwrap_or(u32::MAX)
            .saturating_add(window.peer);
        self.resize(&window, outstanding);
        self.set_threshold(flow);
        let room = self.reservation.saturating_sub(outstanding);
        let due = window.peer < self.reservation / 2 || room > 3 * window.floor;
        (room > 0 && due).then_some(room)
    }

    /// Grows the reservation towards the target while the budget has room, and shrinks it
    /// towards the floor while floors overdraw the budget.
    fn resize(&mut self, window: &Window, outstanding: u32) {
        let Some(budget) = &self.budget else {
            self.reservation = self.reservation.max(window.target);
            return;
        };
        let available = budget.available();
        if available < 0 {
            let keep = window.floor.max(outstanding);
            let spare = self.reservation.saturating_sub(keep);
            let back = spare.min(u32::try_from(-available).unwrap_or(u32::MAX));
            self.reservation -= back;
            budget.give_back(back);
        } else if self.reservation < window.target {
            self.reservation += budget.take(window.target - self.reservation, 0);
        }
    }

    fn set_threshold(&self, flow: &ReceiveFlow) {
        flow.threshold
            .store((self.reservation / 4).max(1) as usize, Ordering::SeqCst);
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.backlog.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    #[cfg(test)]
    pub(crate) fn reservation(&self) -> u32 {
        self.reservation
    }
}

fn payload_len(msg: &ChannelMsg) -> usize {
    match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::mpsc::{Receiver, channel};

    use super::*;

    const PACKET: u32 = 32 * 1024;

    struct Harness {
        inbox: Inbox,
        flow: Arc<ReceiveFlow>,
        wake: Arc<FlowWake>,
        queue: Sender<ChannelMsg>,
        reader: Receiver<ChannelMsg>,
        /// What the peer may still send.
        peer: u32,
        /// The window the channel opened with, which it grows back to.
        target: u32,
    }

    impl Harness {
        fn new(capacity: usize, window: u32, budget: Option<Arc<WindowBudget>>) -> Self {
            let (queue, reader) = channel(capacity);
            let (flow, wake) = (Arc::new(ReceiveFlow::default()), Arc::new(FlowWake::default()));
            let mut inbox = Inbox::default();
            inbox.open(&flow, &wake, ChannelId(1), window, budget);
            Harness { inbox, flow, wake, queue, reader, peer: window, target: window }
        }

        fn receive(&mut self, len: usize) {
            self.peer -= len as u32;
            let data = Bytes::from(vec![b'x'; len]);
            self.inbox.deliver(&self.queue, &self.flow, ChannelMsg::Data { data });
        }

        /// The reader takes one message (and, in auto mode, consumes it).
        fn take(&mut self) -> Option<ChannelMsg> {
            let msg = self.reader.try_recv().ok()?;
            self.flow.taken(&msg);
            Some(msg)
        }

        fn settle(&mut self) -> Option<u32> {
            let window = Window { peer: self.peer, target: self.target, floor: PACKET };
            let grant = self.inbox.settle(&self.queue, &self.flow, Some(window));
            self.peer += grant.unwrap_or(0);
            grant
        }
    }

    #[test]
    fn arrival_grants_nothing_and_consumption_grants_what_was_consumed() {
        let mut h = Harness::new(100, 1 << 20, None);
        for _ in 0..24 {
            h.receive(32 * 1024);
        }
        assert_eq!(h.settle(), None, "data that only arrived must not open the window");
        assert!(h.wake.take_dirty().is_empty());
        for _ in 0..24 {
            h.take();
        }
        // 768 KiB consumed: the peer's window (256 KiB) is below half, so the reader woke the
        // session and everything consumed is granted again.
        assert_eq!(h.wake.take_dirty(), [ChannelId(1)]);
        assert_eq!(h.settle(), Some(24 * 32 * 1024));
        assert_eq!(h.inbox.held(), 0);
        assert_eq!(h.peer, 1 << 20);
    }

    #[test]
    fn a_manual_consumer_opens_the_window_only_as_it_reports() {
        let mut h = Harness::new(100, 1 << 20, None);
        let consumer = WindowConsumer(h.flow.clone());
        h.flow.set_manual();
        for _ in 0..20 {
            h.receive(32 * 1024);
            h.take();
        }
        assert_eq!(h.settle(), None, "taken but not consumed");
        consumer.consumed(20 * 32 * 1024);
        assert_eq!(h.settle(), Some(20 * 32 * 1024));
    }

    #[test]
    fn a_full_queue_backlogs_in_order_and_the_close_comes_last() {
        let mut h = Harness::new(2, 1 << 20, None);
        for len in [40_000, 40_001, 40_002, 40_003] {
            h.receive(len);
        }
        h.inbox
            .deliver(&h.queue, &h.flow, ChannelMsg::Eof);
        h.inbox
            .deliver(&h.queue, &h.flow, ChannelMsg::Close);
        h.inbox.closing = true;
        assert!(!h.inbox.is_drained());
        let mut lens = Vec::new();
        loop {
            match h.take() {
                Some(ChannelMsg::Data { data }) => lens.push(data.len()),
                Some(ChannelMsg::Eof) => lens.push(0),
                Some(ChannelMsg::Close) => break,
                Some(other) => panic!("unexpected {other:?}"),
                // The reader finds its queue empty: the session refills it.
                None => {
                    assert_eq!(h.wake.take_dirty(), [ChannelId(1)]);
                    h.settle();
                }
            }
        }
        assert_eq!(lens, [40_000, 40_001, 40_002, 40_003, 0]);
        assert!(h.inbox.is_drained(), "the closed channel can go now");
    }

    #[test]
    fn a_flood_of_one_byte_messages_is_merged_and_charged_its_overhead() {
        let window = 256 * 1024;
        let mut h = Harness::new(100, window, None);
        // The peer sends one byte per message until its window is used, and nobody reads.
        for _ in 0..window {
            h.receive(1);
        }
        // 100 messages queued, the rest merged into a few backlog entries.
        assert!(h.inbox.backlog.len() <= (window as usize / MERGE_BELOW) + 2);
        let queued_overhead = (100 + h.inbox.backlog.len()) * MESSAGE_OVERHEAD;
        assert_eq!(h.inbox.held(), window as usize + queued_overhead);
        // Overhead counts against the window: consuming the queue's 100 bytes grants nothing,
        // as what is held already exceeds the reservation.
        for _ in 0..100 {
            h.take();
        }
        assert_eq!(h.settle(), None);
        // Once the reader has consumed it all, the window is granted again, all but less than
        // the three packets OpenSSH's rule lets wait for the next adjust.
        while h.take().is_some() || !h.inbox.is_drained() {
            h.settle();
        }
        assert_eq!(h.inbox.held(), 0);
        assert!(window - h.peer <= 3 * PACKET, "peer window {} of {window}", h.peer);
    }

    #[test]
    fn a_flood_of_one_byte_extended_data_is_merged_per_stream() {
        let window = 64 * 1024;
        let mut h = Harness::new(100, window, None);
        // stderr (ext 1) floods, nobody reads; then a byte of another stream, then stderr again.
        for _ in 0..window - 2 {
            h.peer -= 1;
            let data = Bytes::from_static(b"e");
            h.inbox.deliver(&h.queue, &h.flow, ChannelMsg::ExtendedData { ext: 1, data });
        }
        h.receive(1);
        h.peer -= 1;
        let data = Bytes::from_static(b"e");
        h.inbox.deliver(&h.queue, &h.flow, ChannelMsg::ExtendedData { ext: 2, data });
        // The flood takes a few merged entries; the other streams' bytes are not merged into it.
        assert!(h.inbox.backlog.len() <= (window as usize / MERGE_BELOW) + 4);
        let queued_overhead = (100 + h.inbox.backlog.len()) * MESSAGE_OVERHEAD;
        assert_eq!(h.inbox.held(), window as usize + queued_overhead);
        assert!(matches!(h.inbox.backlog.back(), Some(ChannelMsg::ExtendedData { ext: 2, .. })));
        assert!(matches!(
            h.inbox.backlog.get(h.inbox.backlog.len() - 2),
            Some(ChannelMsg::Data { .. })
        ));
    }

    #[test]
    fn a_tight_budget_gives_the_floor_and_shrinks_windows_towards_it() {
        let budget = Arc::new(WindowBudget::new(1 << 20));
        assert_eq!(budget.take(1 << 20, PACKET), 1 << 20);
        // Nothing left: a new channel still gets one packet, overdrawing the budget.
        assert_eq!(budget.take(1 << 20, PACKET), PACKET);
        assert_eq!(budget.available(), -i64::from(PACKET));
        budget.give_back(PACKET);
        budget.give_back(1 << 20);
        assert_eq!(budget.available(), 1 << 20);

        let budget = Arc::new(WindowBudget::new(1 << 20));
        let reserved = budget.take(1 << 20, PACKET);
        let mut h = Harness::new(100, reserved, Some(budget.clone()));
        // Another channel opens with nothing left and overdraws by its floor.
        let floor = budget.take(1 << 20, PACKET);
        assert_eq!(budget.available(), -i64::from(floor));
        for _ in 0..16 {
            h.receive(32 * 1024);
            h.take();
        }
        // Consumed 512 KiB: the window is granted again only up to a reservation shrunk by
        // the overdraft, which goes back to the budget.
        let grant = h.settle().expect("half the window was consumed");
        assert_eq!(grant, 512 * 1024 - PACKET);
        assert_eq!(h.inbox.reservation(), (1 << 20) - PACKET);
        assert_eq!(budget.available(), 0);
        drop(h);
        assert_eq!(budget.available(), i64::from((1 << 20) - PACKET));
    }

    #[test]
    fn a_reader_dropped_with_a_backlog_lets_the_closed_channel_go() {
        let mut h = Harness::new(1, 1 << 20, None);
        for _ in 0..3 {
            h.receive(1000);
        }
        h.inbox.deliver(&h.queue, &h.flow, ChannelMsg::Close);
        h.inbox.closing = true;
        assert!(!h.inbox.is_drained());
        assert!(h.wake.take_dirty().is_empty(), "nothing was read yet");
        // The application drops its read half without reading (its client went away): the
        // session hears of it, and the backlog no longer keeps the closed channel.
        let receiver = std::mem::replace(&mut h.reader, channel(1).1);
        drop(crate::ChannelReadHalf {
            receiver,
            flow: h.flow.clone(),
        });
        assert_eq!(h.wake.take_dirty(), [ChannelId(1)]);
        h.settle();
        assert!(h.inbox.is_drained());
    }

    #[test]
    fn a_reader_that_went_away_costs_nothing() {
        let mut h = Harness::new(1, 1 << 20, None);
        drop(std::mem::replace(&mut h.reader, channel(1).1));
        h.receive(1000);
        h.receive(1000);
        assert_eq!(h.inbox.held(), 0);
        assert!(h.inbox.is_drained());
    }
}
