//! The session side of receive flow control for client channels (a lazytunnel patch; the
//! accounting itself is in `channels/flow.rs`).

use ssh_encoding::Encode;

use crate::channels::ChannelRef;
use crate::channels::flow::Window;
use crate::client::{Config, Session};
use crate::session::Encrypted;
use crate::{ChannelId, msg};

impl Session {
    /// Starts tracking a channel. `reserved`: its window was taken from the budget.
    pub(crate) fn register_channel(
        &mut self,
        id: ChannelId,
        mut channel_ref: ChannelRef,
        reserved: bool,
    ) {
        let config = &self.common.config;
        let window = self
            .common
            .encrypted
            .as_ref()
            .and_then(|enc| enc.channels.get(&id))
            .map_or(config.window_size, |params| params.sender_window_size);
        let budget = if reserved {
            config.window_budget.clone()
        } else {
            None
        };
        let flow = channel_ref.flow.clone();
        channel_ref
            .inbox
            .open(&flow, &self.flow_wake, id, window, budget);
        self.channels.insert(id, channel_ref);
    }

    /// Settles the channels whose readers have consumed enough: refills their queues, grants
    /// window for what was consumed, and lets go of closed channels once delivered.
    pub(crate) fn settle_channels(&mut self) -> Result<(), crate::Error> {
        for id in self.flow_wake.take_dirty() {
            let Some(channel_ref) = self.channels.get_mut(&id) else {
                continue;
            };
            let config = &self.common.config;
            let window = self
                .common
                .encrypted
                .as_ref()
                .and_then(|enc| enc.channels.get(&id))
                .map(|params| Window {
                    peer: params.sender_window_size,
                    target: config.window_size,
                    floor: config.maximum_packet_size,
                });
            if let Some(amount) = channel_ref.settle(window)
                && let Some(enc) = self.common.encrypted.as_mut()
            {
                enc.grant_window(id, amount)?;
            }
            if channel_ref.inbox.closing && channel_ref.inbox.is_drained() {
                self.channels.remove(&id);
            }
        }
        Ok(())
    }
}

/// The receive window a new channel offers: the configured one, within the budget.
pub(crate) fn initial_window(config: &Config) -> u32 {
    match &config.window_budget {
        Some(budget) => budget.take(config.window_size, config.maximum_packet_size),
        None => config.window_size,
    }
}

impl Encrypted {
    /// Debits `len` received bytes from the window granted on `channel`. False if they exceed
    /// it: the peer ignored the window (RFC 4254 §5.2), and the data is to be dropped, as
    /// OpenSSH drops it.
    pub(crate) fn debit_window(&mut self, channel: ChannelId, len: usize) -> bool {
        let Some(params) = self.channels.get_mut(&channel) else {
            return false;
        };
        match u32::try_from(len) {
            Ok(len) if len <= params.sender_window_size => {
                params.sender_window_size -= len;
                true
            }
            _ => false,
        }
    }

    /// Grants the peer `amount` more bytes on `channel`.
    pub(crate) fn grant_window(
        &mut self,
        channel: ChannelId,
        amount: u32,
    ) -> Result<(), crate::Error> {
        if let Some(params) = self.channels.get_mut(&channel) {
            push_packet!(self.write, {
                self.write.push(msg::CHANNEL_WINDOW_ADJUST);
                params.recipient_channel.encode(&mut self.write)?;
                amount.encode(&mut self.write)?;
            });
            params.sender_window_size = params.sender_window_size.saturating_add(amount);
        }
        Ok(())
    }
}
