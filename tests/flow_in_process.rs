//! Specs of the receive flow control our russh patch gives the client (`vendor/russh-PATCH.md`),
//! against an in-process russh server that the test drives: what a server may send, and what
//! the client holds, when its consumer does not read; and what happens to a server that ignores
//! the window.
//!
//! The client is russh's own, with a `WindowBudget` as lazytunnel configures it, rather than the
//! daemon: the daemon's forwarder drains every channel into its own buffer as fast as messages
//! come, so a daemon-level test would never leave the flood in russh's queue and backlog, which
//! is what these specs are about; and the daemon does not offer the `none` cipher the second
//! spec needs to rewrite packets.

mod common;
mod flow_in_process_support;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TIMEOUT, deterministic_bytes, procfs};
use flow_in_process_support::{
    ChannelServer, RusshLog, WindowInflater, connect, echo_round_trip, open, read_data, spawn_echo,
};
use russh::{Preferred, WindowBudget, cipher, client, mac};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

/// The specs measure memory and wait for stalls, so they run one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Spec 1: the window each channel opens with, and the budget all channels share.
const FLOOD_WINDOW: u32 = 256 * 1024;
const FLOOD_BUDGET: usize = 1024 * 1024;
/// Bytes of the flood: more than the window, so the server must wait for the reader.
const FLOOD_TOTAL: usize = FLOOD_WINDOW as usize + 64 * 1024;
/// What the process may grow by beyond the budget while the flood is held: the queue's 100
/// unmerged messages (~20 KiB), the allocator's free lists after the merging copies (each merge
/// frees a run of up to 16 KiB, so the heap ends up to a window's worth larger than what is
/// live), the sessions' buffers and the runtime's per-thread arenas (a few 132 KiB heaps).
const RSS_OVERHEAD: u64 = 4 * 1024 * 1024;
/// A held 1-byte message that is not merged costs at least this much: the smallest heap chunk
/// for its payload (32 bytes with glibc) plus its slot in the queue or backlog (a `ChannelMsg`,
/// 32 bytes and more).
const UNMERGED_MESSAGE_COST: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_flood_at_a_client_that_never_reads_stops_at_the_window_within_the_budget() {
    let _alone = ALONE.lock().await;
    const {
        assert!(
            FLOOD_BUDGET as u64 + RSS_OVERHEAD < FLOOD_WINDOW as u64 * UNMERGED_MESSAGE_COST,
            "the memory bound would not tell merged from unmerged messages"
        );
    }
    let started = Instant::now();
    let mut server = ChannelServer::start(Preferred::default()).await;
    let budget = Arc::new(WindowBudget::new(FLOOD_BUDGET));
    let client = connect(
        server.addr(),
        client::Config {
            window_size: FLOOD_WINDOW,
            window_budget: Some(budget.clone()),
            ..Default::default()
        },
    )
    .await;
    // An echo channel first: the session, its buffers and the allocator are all in use before
    // the memory baseline, and the same channel shows afterwards that the session still works.
    let mut echo = open(&client).await;
    spawn_echo(server.next_channel().await);
    echo_round_trip(&mut echo, b"before the flood").await;

    let rss_before = rss();
    let mut flooded = open(&client).await;
    assert_eq!(
        budget.available(),
        (FLOOD_BUDGET - 2 * FLOOD_WINDOW as usize) as i64,
        "each channel reserves its window from the budget"
    );
    let expected = deterministic_bytes(1, FLOOD_TOTAL);
    let sent = Arc::new(AtomicUsize::new(0));
    let (blocked_tx, mut blocked) = watch::channel(None);
    let sender = tokio::spawn(send_one_byte_at_a_time(
        server.next_channel().await,
        expected.clone(),
        sent.clone(),
        blocked_tx,
    ));

    let stalled_at = match tokio::time::timeout(TIMEOUT, blocked.wait_for(Option::is_some)).await {
        Ok(Ok(at)) => (*at).expect("waited for some"),
        Ok(Err(_)) => panic!(
            "the sender ended after {} of {FLOOD_TOTAL} bytes without its window running out: \
             the client granted window for data nobody read",
            sent.load(Ordering::SeqCst)
        ),
        Err(_) => panic!(
            "the server's window did not run out within {TIMEOUT:?} ({} bytes sent)",
            sent.load(Ordering::SeqCst)
        ),
    };
    // A window that ran out could still be granted again by a late adjust. Two round trips on
    // the other channel settle that: when the first echo is back, the client has processed
    // every flood packet sent before it (one TCP stream, in order) and written any adjust for
    // them; the second echo goes out after those adjusts, so when it is back the server has
    // processed them too.
    echo_round_trip(&mut echo, b"first barrier").await;
    echo_round_trip(&mut echo, b"second barrier").await;
    let growth = rss().saturating_sub(rss_before) * 1024;
    eprintln!(
        "flood: the server sent {stalled_at} bytes of a {FLOOD_WINDOW}-byte window in {:?}; \
         rss grew by {growth} bytes (bound {})",
        started.elapsed(),
        FLOOD_BUDGET as u64 + RSS_OVERHEAD
    );
    assert_eq!(
        stalled_at, FLOOD_WINDOW as usize,
        "a client that never reads grants exactly its window: no more, and all of it"
    );
    assert_eq!(
        (sent.load(Ordering::SeqCst), *blocked.borrow()),
        (stalled_at, Some(stalled_at)),
        "the server sent more once its window had run out, though the client read nothing"
    );
    assert!(
        growth <= FLOOD_BUDGET as u64 + RSS_OVERHEAD,
        "holding {FLOOD_WINDOW} one-byte messages grew the process by {growth} bytes, more than \
         the budget ({FLOOD_BUDGET}) plus {RSS_OVERHEAD}: are they merged and charged?"
    );

    // The reader catches up: every byte, in order, then the server's EOF.
    let received = read_data(&mut flooded, FLOOD_TOTAL, true).await;
    assert_eq!(received.len(), FLOOD_TOTAL, "bytes received");
    assert!(received == expected, "the flood arrived out of order");
    tokio::time::timeout(TIMEOUT, sender)
        .await
        .expect("the sender did not finish")
        .expect("the sender panicked");

    // The session carried it all and still works, on the old channel and on a new one.
    echo_round_trip(&mut echo, b"after the flood").await;
    let mut fresh = open(&client).await;
    spawn_echo(server.next_channel().await);
    echo_round_trip(&mut fresh, b"a new channel after the flood").await;
    eprintln!("flood: done in {:?}", started.elapsed());
}

/// Writes `bytes` one per CHANNEL_DATA message, counting them in `sent`. The channel's writer
/// waits while the client's window is used up; each time the window runs out, `blocked` says
/// after how many bytes.
async fn send_one_byte_at_a_time(
    channel: russh::Channel<russh::server::Msg>,
    bytes: Vec<u8>,
    sent: Arc<AtomicUsize>,
    blocked: watch::Sender<Option<usize>>,
) {
    let mut writer = channel.make_writer();
    for byte in bytes {
        writer
            .write_all(&[byte])
            .await
            .expect("the server could not send");
        let count = sent.fetch_add(1, Ordering::SeqCst) + 1;
        if channel.writable_packet_size().await == 0 {
            blocked.send_replace(Some(count));
        }
    }
    channel.eof().await.expect("the server could not send EOF");
}

/// The resident set of this process, in KiB.
fn rss() -> u64 {
    procfs::status_field(std::process::id(), "VmRSS")
}

/// Spec 2: what the client grants, and what the proxy tells the server it granted.
const GRANTED: u32 = 128 * 1024;
const CLAIMED: u32 = 1 << 30;
/// The server's packets: equal, and not a divisor of the window, so one of them straddles its
/// end.
const CHUNK: usize = 3000;
const CHUNKS: usize = 90;
/// russh's warning for data beyond the window.
const BEYOND: &str = "bytes beyond the window; dropped";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_a_server_sends_beyond_the_window_is_dropped_and_the_session_goes_on() {
    let _alone = ALONE.lock().await;
    let log = RusshLog::capture();
    let plaintext = Preferred {
        cipher: Cow::Borrowed(&[cipher::NONE]),
        mac: Cow::Borrowed(&[mac::NONE]),
        ..Default::default()
    };
    let mut server = ChannelServer::start(plaintext.clone()).await;
    let proxy = WindowInflater::start(server.addr(), CLAIMED).await;
    let client = connect(
        proxy.addr(),
        client::Config {
            window_size: GRANTED,
            window_budget: Some(Arc::new(WindowBudget::new(4 * GRANTED as usize))),
            preferred: plaintext,
            ..Default::default()
        },
    )
    .await;

    let mut violated = open(&client).await;
    assert_eq!(
        proxy.rewritten(),
        1,
        "the proxy read the CHANNEL_OPEN (so the traffic is plaintext) and inflated its window"
    );
    let before = log.count(BEYOND);
    let sent = deterministic_bytes(2, CHUNK * CHUNKS);
    let violator = server.next_channel().await;
    let mut writer = violator.make_writer();
    for chunk in sent.chunks(CHUNK) {
        writer
            .write_all(chunk)
            .await
            .expect("the server could not send");
    }

    // Whole packets fit until the window is short of one; that one and every later one (none
    // fits in what is left) are dropped, each with a warning. The client has read nothing, so
    // it has granted nothing more.
    let fitting = GRANTED as usize / CHUNK;
    log.wait_for_count(BEYOND, before + CHUNKS - fitting).await;
    let received = read_data(&mut violated, fitting * CHUNK, false).await;
    assert!(
        received == sent[..fitting * CHUNK],
        "the client delivered other bytes than the first {fitting} packets"
    );

    // Nothing more is delivered on that channel, and the session is up: the echo below goes
    // through the same session after the dropped data, so had any been delivered it would be
    // queued on the violated channel by now.
    let mut echo = open(&client).await;
    spawn_echo(server.next_channel().await);
    echo_round_trip(&mut echo, b"after the violation").await;
    assert!(!client.is_closed(), "the session was torn down");
    assert!(
        tokio::time::timeout(Duration::ZERO, violated.wait())
            .await
            .is_err(),
        "the violated channel delivered more than the window"
    );
    assert_eq!(
        log.count(BEYOND),
        before + CHUNKS - fitting,
        "one warning per dropped packet"
    );
}
