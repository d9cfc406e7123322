//! The decoder's memory rules: assembly that grows with what arrives, the budget.
use super::*;

fn frame(codec: &Codec, payload: &[u8]) -> Vec<u8> {
    let mut dst = bytes::BytesMut::new();
    codec.encode(payload, &mut dst).unwrap();
    dst.to_vec()
}

#[test]
fn assembly_grows_with_bytes_received_and_releases_large_buffers() {
    let codec = Codec::new(Framing::U32Be, 1 << 20).unwrap();
    let big = frame(&codec, &vec![7; 1 << 20]);
    let mut d = Decoder::new(codec);
    d.decode(&big[..3], |_| panic!()).unwrap();
    assert_eq!(d.buf.capacity(), 0); // header incomplete: nothing allocated
    d.decode(&big[3..10], |_| panic!()).unwrap();
    assert_eq!(d.buf.capacity(), FIRST_CAPACITY); // 1 MiB announced, 6 bytes received
    let mut seen = 0;
    let mut received = 6;
    for chunk in big[10..].chunks(4096) {
        d.decode(chunk, |p| {
            seen = p.len();
            ControlFlow::Continue(())
        })
        .unwrap();
        received += chunk.len();
        if seen == 0 {
            assert!(d.buf.capacity() <= (2 * received).max(FIRST_CAPACITY));
            assert!(d.buf.capacity() <= 1 << 20);
        }
    }
    assert_eq!(seen, 1 << 20);
    assert_eq!(d.buf.capacity(), 0);

    // small frames keep their buffer
    let small = frame(&codec, &[1; 1000]);
    d.decode(&small[..500], |_| panic!()).unwrap();
    d.decode(&small[500..], |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(d.buf.capacity(), 1000);
    assert_eq!(d.buffered(), 0);
}

struct Wakes(std::sync::atomic::AtomicU32);
impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn wakes() -> (Arc<Wakes>, Waker) {
    let w = Arc::new(Wakes(Default::default()));
    (w.clone(), Waker::from(w))
}

#[test]
fn budget_admits_whole_frames_and_wakes_the_waiting() {
    let codec = Codec::new(Framing::U16Be, 1000).unwrap();
    let budget = Arc::new(AssemblyBudget::new(1000));
    let (wa, a_waker) = wakes();
    let (wb, b_waker) = wakes();
    let mut a = Decoder::with_budget(codec, budget.clone(), a_waker).strict();
    let mut b = Decoder::with_budget(codec, budget.clone(), b_waker).strict();
    let fa = frame(&codec, &[1; 700]);
    let fb = frame(&codec, &[2; 400]);

    // A frame inside one chunk needs no budget.
    let mut n = 0;
    b.decode(&fb, |_| {
        n += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((n, budget.used()), (1, 0));

    assert_eq!(a.decode(&fa[..100], |_| panic!()).unwrap(), 100);
    assert_eq!(budget.used(), 700);
    // b: a small frame first (delivered from the chunk), then one the budget cannot cover:
    // it stops in front of that one's header.
    let mut chunk = frame(&codec, b"ok");
    chunk.extend_from_slice(&fb[..50]);
    let mut got = Vec::new();
    let used = b
        .decode(&chunk, |p| {
            got.push(p.to_vec());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!((used, got.len()), (4, 1));
    assert!(b.waiting_for_budget());
    assert_eq!(b.buffered(), 0);
    assert_eq!(wb.0.load(std::sync::atomic::Ordering::Relaxed), 0);

    // a completes: its 700 bytes come back and b is woken.
    let mut done = 0;
    a.decode(&fa[100..], |p| {
        done = p.len();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((done, budget.used()), (700, 0));
    assert_eq!(wb.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(wa.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(b.decode(&chunk[used..], |_| panic!()).unwrap(), 50);
    assert!(!b.waiting_for_budget());
    assert_eq!(budget.used(), 400);

    // A header split across chunks is admitted when it completes; dropping the decoder
    // mid-frame returns its reservation.
    let mut c = Decoder::with_budget(codec, budget.clone(), wakes().1).strict();
    assert_eq!(c.decode(&fa[..1], |_| panic!()).unwrap(), 1);
    assert_eq!(c.decode(&fa[1..3], |_| panic!()).unwrap(), 0);
    assert!(c.waiting_for_budget());
    drop(b);
    assert_eq!(budget.used(), 0);
    assert_eq!(c.decode(&fa[1..3], |_| panic!()).unwrap(), 2);
    assert_eq!(budget.used(), 700);
    drop(c);
    assert_eq!(budget.used(), 0);
}

#[test]
fn budget_pays_for_delimited_bytes_as_they_arrive() {
    let codec = Codec::new(Framing::Delimited(b'\n'), 10_000).unwrap();
    let budget = Arc::new(AssemblyBudget::new(250));
    let mut d = Decoder::with_budget(codec, budget.clone(), wakes().1).strict();
    assert_eq!(d.decode(&[b'x'; 200], |_| panic!()).unwrap(), 200);
    assert_eq!(budget.used(), 200);
    assert_eq!(d.decode(&[b'x'; 100], |_| panic!()).unwrap(), 0);
    assert!(d.waiting_for_budget());
    let mut n = 0;
    assert_eq!(
        d.decode(b"x\nyy", |p| {
            n = p.len();
            ControlFlow::Continue(())
        })
        .unwrap(),
        4
    );
    assert_eq!((n, budget.used()), (201, 2));
}

#[test]
fn rejected_header_allocates_nothing() {
    let codec = Codec::new(Framing::U64Le, 1000).unwrap();
    let mut d = Decoder::new(codec);
    d.decode(&[0xff; 5], |_| panic!()).unwrap();
    assert!(d.decode(&[0xff; 5], |_| panic!()).is_err());
    assert_eq!(d.buf.capacity(), 0);
}

#[test]
fn delimited_capacity_stays_within_max() {
    let codec = Codec::new(Framing::Delimited(b'\n'), 10_000).unwrap();
    let mut d = Decoder::new(codec);
    for _ in 0..99 {
        d.decode(&[b'x'; 101], |_| panic!()).unwrap();
        assert!(d.buf.capacity() <= 10_000);
    }
    assert_eq!(d.buffered(), 9999);
    let mut n = 0;
    d.decode(b"x\n", |p| {
        n = p.len();
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(n, 10_000);
}
