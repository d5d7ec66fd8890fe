use std::sync::Arc;

use tokio::sync::mpsc::Sender;

use super::WindowSizeRef;
use super::flow::{Inbox, ReceiveFlow};
use crate::ChannelMsg;

/// A handle to the [`super::Channel`]'s to be able to transmit messages
/// to it and update it's `window_size`.
#[derive(Debug)]
pub struct ChannelRef {
    pub(super) sender: Sender<ChannelMsg>,
    pub(super) window_size: WindowSizeRef,
    /// Shared with the channel's reader.
    pub(crate) flow: Arc<ReceiveFlow>,
    /// The session's side of the receive window.
    pub(crate) inbox: Inbox,
}

impl ChannelRef {
    pub fn new(sender: Sender<ChannelMsg>) -> Self {
        Self {
            sender,
            window_size: WindowSizeRef::new(0),
            flow: Arc::default(),
            inbox: Inbox::default(),
        }
    }

    pub(crate) fn window_size(&self) -> &WindowSizeRef {
        &self.window_size
    }

    /// Settles what the reader consumed; returns the window to grant, if any.
    pub(crate) fn settle(&mut self, window: Option<super::flow::Window>) -> Option<u32> {
        self.inbox.settle(&self.sender, &self.flow, window)
    }

    /// Queues `msg` for the channel's reader without waiting.
    pub(crate) fn deliver(&mut self, msg: ChannelMsg) {
        self.inbox.deliver(&self.sender, &self.flow, msg);
    }
}

impl std::ops::Deref for ChannelRef {
    type Target = Sender<ChannelMsg>;

    fn deref(&self) -> &Self::Target {
        &self.sender
    }
}
