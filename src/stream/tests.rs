//! The session's pause and resume without a core thread: a channel that fills stops the
//! session, bytes that arrive meanwhile are held, and `resume` delivers them in order once the
//! consumer made room.

use crate::channel::{self, ChannelLink, MessageReceiver};
use crate::engine::handle::{
    AfterFailure, ConnInfo, CoreHandle, Delivered, SendQueueHandle, Session,
};
use crate::frame::{Codec, Framing};
use crate::stream::conn::Conn;
use crate::stream::delivery::Delivery;
use crate::stream::handler::HandlerErrorPolicy;
use crate::stream::session::{FramedSession, SessionLimits};

fn codec() -> Codec {
    Codec::new(Framing::U32Be, 1 << 16).expect("codec")
}

pub(crate) fn conn(core: &CoreHandle, id: u64) -> Conn {
    let info = ConnInfo {
        id,
        peer: "127.0.0.1:1".parse().expect("addr"),
        local: "127.0.0.1:2".parse().expect("addr"),
        core: 0,
        peer_cred: None,
        #[cfg(feature = "tls")]
        tls: None,
    };
    let sendq = SendQueueHandle::new(core, 1 << 16, Box::new(codec()), AfterFailure::Refuse);
    Conn::new(info, codec(), sendq)
}

/// Frames of one byte each, `first..=last`.
fn wire(first: u8, last: u8) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for b in first..=last {
        codec().encode(&[b], &mut out).expect("encode");
    }
    out.to_vec()
}

struct Setup {
    core: CoreHandle,
    session: FramedSession,
    rx: MessageReceiver,
    _link: ChannelLink,
}

fn setup(capacity: usize) -> Setup {
    let core = CoreHandle::detached();
    let (link, rx) = channel::open(capacity);
    let session = FramedSession::new(
        conn(&core, 1),
        Delivery::Channel(link.sender()),
        HandlerErrorPolicy::LogAndContinue,
        None,
        SessionLimits::default(),
    );
    Setup {
        core,
        session,
        rx,
        _link: link,
    }
}

#[test]
fn a_full_channel_pauses_the_session_and_resume_delivers_what_it_held_in_order() {
    let Setup {
        core,
        mut session,
        rx,
        ..
    } = setup(2);
    let first = session.on_data(&wire(1, 6)).expect("data");
    assert_eq!(
        first,
        Delivered {
            messages: 2,
            paused: true
        },
        "two fill the channel and stop the session"
    );
    // In flight when reading stopped: held, not delivered.
    let late = session.on_data(&wire(7, 8)).expect("data");
    assert_eq!(
        late,
        Delivered {
            messages: 0,
            paused: true
        }
    );
    assert_eq!(core.take_resumes(), 0, "nobody made room yet");

    let mut got = Vec::new();
    let mut rounds = 0;
    loop {
        while let Ok(msg) = rx.try_recv() {
            got.push(msg.payload[0]);
        }
        if got.len() == 8 {
            break;
        }
        assert_eq!(
            core.take_resumes(),
            1,
            "draining the channel resumes the session once"
        );
        let resumed = session.resume().expect("resume");
        assert!(resumed.messages > 0, "resume delivers what was held");
        rounds += 1;
        assert!(rounds < 10, "resume makes progress");
    }
    assert_eq!(got, (1..=8).collect::<Vec<u8>>(), "every message, in order");
    assert_eq!(session.resume().expect("resume"), Delivered::default());
    let more = session.on_data(&wire(9, 9)).expect("data");
    assert_eq!(more.messages, 1, "reading again delivers at once");
    assert!(!more.paused);
}

#[test]
fn a_session_that_is_not_paused_ignores_resume() {
    let Setup { mut session, .. } = setup(16);
    assert_eq!(session.on_data(&wire(1, 3)).expect("data").messages, 3);
    assert_eq!(session.resume().expect("resume"), Delivered::default());
}

#[test]
fn a_frame_cut_across_receives_is_delivered_once_whole() {
    let Setup {
        mut session, rx, ..
    } = setup(16);
    let bytes = wire(1, 2);
    let (a, b) = bytes.split_at(3);
    assert_eq!(session.on_data(a).expect("data").messages, 0);
    assert_eq!(session.on_data(b).expect("data").messages, 2);
    let got: Vec<u8> = rx.try_iter().map(|m| m.payload[0]).collect();
    assert_eq!(got, vec![1, 2]);
}
