//! Streaming decoder: turns a byte stream received in arbitrary chunks into payloads.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::Waker;

use super::budget::Stake;
use super::fixed::Fixed;
use super::{delimited, AssemblyBudget, Codec, FrameError, Framing, Head, MAX_HEADER_LEN};

/// Capacity of the assembly buffer kept after a frame has been delivered; more is freed. This
/// (plus the header bytes) is all a decoder holds between frames.
const KEEP_CAPACITY: usize = 16 * 1024;

/// The first allocation for a frame being assembled (less if the frame is smaller); it then
/// doubles as bytes arrive, never past the announced length.
const FIRST_CAPACITY: usize = 4 * 1024;

/// Decodes one connection's byte stream, fed in chunks cut at any byte.
///
/// A frame lying wholly inside a chunk is passed to the callback as a sub-slice of that chunk,
/// without copying. A frame split across chunks is assembled in an internal buffer that grows
/// with the bytes received (doubling, never past the announced length, which was checked
/// against the maximum first): a peer that announces a large frame and sends little of it gets
/// little memory. For [`Framing::Delimited`] no byte is scanned twice and no more than the
/// maximum is held.
///
/// With an [`AssemblyBudget`] ([`Decoder::with_budget`]), a frame is assembled only once the
/// budget covers it; see there.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec,
    /// Header bytes of the frame in progress (prefix framings); `head_len > 0` iff a frame is in
    /// progress.
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    /// Payload length of the frame in progress, once its header is complete.
    want: Option<usize>,
    /// Payload bytes received of the frame in progress (for `Delimited`: the message so far,
    /// none of which is the delimiter).
    buf: Vec<u8>,
    /// The error that killed the stream, returned by every later call.
    error: Option<FrameError>,
    /// The shared budget and this decoder's stake in it (what the frame in progress reserved,
    /// the waker to call when the budget has room again).
    budget: Option<(Arc<AssemblyBudget>, Arc<Stake>)>,
    /// Stopped in front of a frame the budget could not cover.
    waiting: bool,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.release();
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use buffstreams::frame::{Codec, Decoder};
    /// use buffstreams::Framing;
    /// let mut decoder = Decoder::new(Codec::new(Framing::U16Be, 100)?);
    /// let mut got = Vec::new();
    /// for chunk in [&[0u8, 2, b'h'][..], &[b'i']] {
    ///     decoder.decode(chunk, |msg| {
    ///         got.push(msg.to_vec());
    ///         ControlFlow::Continue(())
    ///     })?;
    /// }
    /// assert_eq!(got, [b"hi"]);
    /// # Ok::<(), buffstreams::FrameError>(())
    /// ```
    pub fn new(codec: Codec) -> Decoder {
        Decoder {
            codec,
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            want: None,
            buf: Vec::new(),
            error: None,
            budget: None,
            waiting: false,
        }
    }

    /// A decoder whose partly received frames are paid for from `budget`.
    ///
    /// Before assembling a frame that does not lie inside one chunk, the decoder reserves its
    /// announced length (for [`Framing::Delimited`]: the bytes held, as they arrive); it returns
    /// them when the frame is delivered or the decoder dropped. If the budget cannot cover the
    /// frame, [`decode`](Decoder::decode) stops in front of it (returning how far it got),
    /// [`waiting_for_budget`](Decoder::waiting_for_budget) turns true, and `waker` is woken once
    /// memory is returned: feed the rest of the chunk again then. Frames that lie inside one
    /// chunk are delivered from it and need no budget.
    ///
    /// See [`AssemblyBudget`] for an example.
    pub fn with_budget(codec: Codec, budget: Arc<AssemblyBudget>, waker: Waker) -> Decoder {
        let mut decoder = Decoder::new(codec);
        let stake = budget.stake(waker);
        decoder.budget = Some((budget, stake));
        decoder
    }

    /// Whether the last [`decode`](Decoder::decode) stopped because the budget could not cover
    /// the next frame (its waker will be woken when it can).
    #[inline]
    pub fn waiting_for_budget(&self) -> bool {
        self.waiting
    }

    /// Whether the budget (under [`BudgetPolicy::CloseLargest`](super::BudgetPolicy)) asked
    /// this stream to give up because it holds the most: close it, which returns its memory.
    /// Its waker was woken when that happened.
    #[inline]
    pub fn evicted(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|(_, stake)| stake.evicted())
    }

    /// Bytes this decoder has reserved from its budget now.
    #[inline]
    pub fn reserved(&self) -> usize {
        self.budget.as_ref().map_or(0, |(_, stake)| stake.held())
    }

    /// Reserves `bytes` more for the frame in progress; false (and waiting) if the budget is
    /// short.
    fn admit(&mut self, bytes: usize) -> bool {
        let Some((budget, stake)) = &self.budget else {
            return true;
        };
        let admitted =
            bytes == 0 || budget.try_reserve(bytes) || budget.reserve_or_wait(bytes, stake);
        if admitted {
            stake.add(bytes);
        }
        self.waiting = !admitted;
        admitted
    }

    /// Returns what the frame in progress had reserved.
    fn release(&mut self) {
        if let Some((budget, stake)) = &self.budget {
            budget.release(stake.take());
        }
    }

    /// The codec this decoder uses.
    #[inline]
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Feed the next chunk of the stream, calling `on_frame` with every complete payload, in
    /// order.
    ///
    /// Returns how many bytes of `chunk` were consumed: all of them, unless `on_frame` returned
    /// [`ControlFlow::Break`], in which case decoding stops just past that frame and the offset
    /// of its end is returned, or the decoder's budget could not cover the next frame
    /// ([`waiting_for_budget`](Decoder::waiting_for_budget)), in which case it stops in front
    /// of it. Either way, feed the rest of the chunk later.
    ///
    /// An error means the stream is corrupt (frames before the bad one have been delivered);
    /// every later call returns the same error.
    #[inline]
    pub fn decode<F>(&mut self, chunk: &[u8], mut on_frame: F) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.waiting = false;
        let result = match self.codec.framing() {
            Framing::Delimited(delimiter) => self.decode_delimited(delimiter, chunk, &mut on_frame),
            _ => self.decode_prefixed(chunk, &mut on_frame),
        };
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// Bytes of an incomplete frame currently held (header bytes included).
    #[inline]
    pub fn buffered(&self) -> usize {
        self.head_len + self.buf.len()
    }

    /// Check the stream may end here: [`FrameError::Truncated`] if part of a frame is held (or
    /// the error that killed the stream).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    fn decode_prefixed<F>(&mut self, chunk: &[u8], on_frame: &mut F) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let mut pos = 0;
        if self.head_len > 0 {
            let Some(used) = self.continue_prefixed(chunk)? else {
                return Ok(0); // waiting for the budget
            };
            pos = used;
            if self.want != Some(self.buf.len()) {
                return Ok(chunk.len());
            }
            let flow = on_frame(&self.buf);
            self.reset();
            if flow.is_break() {
                return Ok(pos);
            }
        }
        if let Some(fixed) = self.codec.framing().fixed() {
            // Every frame that lies whole in the chunk, with one dispatch on the header's width
            // per chunk instead of per frame; the general loop below takes the tail (a split
            // frame, or a length over the maximum, which it reports).
            let max = self.codec.max_message_size();
            let (used, stopped) = match fixed {
                Fixed::U16Be => whole_frames(chunk, pos, max, u16::from_be_bytes, on_frame),
                Fixed::U16Le => whole_frames(chunk, pos, max, u16::from_le_bytes, on_frame),
                Fixed::U32Be => whole_frames(chunk, pos, max, u32::from_be_bytes, on_frame),
                Fixed::U32Le => whole_frames(chunk, pos, max, u32::from_le_bytes, on_frame),
                Fixed::U64Be => whole_frames(chunk, pos, max, u64::from_be_bytes, on_frame),
                Fixed::U64Le => whole_frames(chunk, pos, max, u64::from_le_bytes, on_frame),
            };
            pos = used;
            if stopped {
                return Ok(pos);
            }
        }
        while let Some(rest) = chunk.get(pos..).filter(|rest| !rest.is_empty()) {
            match self.codec.head(rest)? {
                Head::Known {
                    header_len,
                    payload_len,
                } => {
                    let end = header_len + payload_len; // both bounded, cannot overflow
                    match rest.get(header_len..end) {
                        Some(payload) => {
                            pos += end;
                            if on_frame(payload).is_break() {
                                return Ok(pos);
                            }
                        }
                        None => {
                            if !self.admit(payload_len) {
                                return Ok(pos);
                            }
                            self.start_payload(rest.get(..header_len).unwrap_or(&[]), payload_len);
                            self.append(rest.get(header_len..).unwrap_or(&[]));
                            return Ok(chunk.len());
                        }
                    }
                }
                Head::Incomplete => {
                    // fewer than MAX_HEADER_LEN bytes
                    self.head_len = rest.len().min(MAX_HEADER_LEN);
                    if let (Some(dst), Some(src)) = (
                        self.head.get_mut(..self.head_len),
                        rest.get(..self.head_len),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        Ok(chunk.len())
    }

    /// Continue the frame in progress with the front of `chunk`; returns the bytes used, or
    /// `None` if its header is now complete but the budget cannot cover it (nothing of `chunk`
    /// is used then).
    fn continue_prefixed(&mut self, chunk: &[u8]) -> Result<Option<usize>, FrameError> {
        let mut used = 0;
        let want = match self.want {
            Some(want) => want,
            None => {
                // The header is incomplete: complete it from the chunk.
                let old = self.head_len;
                let take = chunk.len().min(MAX_HEADER_LEN - old);
                if let (Some(dst), Some(src)) =
                    (self.head.get_mut(old..old + take), chunk.get(..take))
                {
                    dst.copy_from_slice(src);
                }
                let head = self.head.get(..old + take).unwrap_or(&[]);
                match self.codec.head(head) {
                    Ok(Head::Incomplete) => {
                        // `take` is all of the chunk: a full MAX_HEADER_LEN is never incomplete
                        self.head_len = old + take;
                        return Ok(Some(take));
                    }
                    Ok(Head::Known {
                        header_len,
                        payload_len,
                    }) => {
                        if !self.admit(payload_len) {
                            return Ok(None);
                        }
                        used = header_len.saturating_sub(old);
                        self.head_len = header_len;
                        self.start_payload(&[], payload_len);
                        payload_len
                    }
                    Err(error) => {
                        self.head_len = old + take;
                        return Err(error);
                    }
                }
            }
        };
        let take = (want - self.buf.len()).min(chunk.len() - used);
        self.append(chunk.get(used..used + take).unwrap_or(&[]));
        Ok(Some(used + take))
    }

    /// Appends payload bytes of the frame in progress (never more than it announced), growing
    /// the buffer by doubling but never past the announced length.
    fn append(&mut self, bytes: &[u8]) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let want = self.want.unwrap_or(needed);
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(FIRST_CAPACITY)
                .min(want)
                .max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Begin assembling a frame whose header (`head`, unless already stored) announced
    /// `payload_len` bytes, already checked against the maximum.
    fn start_payload(&mut self, head: &[u8], payload_len: usize) {
        if !head.is_empty() {
            self.head_len = head.len();
            if let Some(dst) = self.head.get_mut(..head.len()) {
                dst.copy_from_slice(head);
            }
        }
        self.want = Some(payload_len);
    }

    /// Forget the delivered frame, keeping a moderate buffer for the next one.
    fn reset(&mut self) {
        self.release();
        self.head_len = 0;
        self.want = None;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    fn decode_delimited<F>(
        &mut self,
        delimiter: u8,
        chunk: &[u8],
        on_frame: &mut F,
    ) -> Result<usize, FrameError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let max = self.codec.max_message_size();
        let mut pos = 0;
        if !self.buf.is_empty() {
            // Only the new bytes are scanned: `buf` holds no delimiter.
            match delimited::scan(chunk, delimiter, self.buf.len(), max)? {
                Some(i) => {
                    self.buf.extend_from_slice(chunk.get(..i).unwrap_or(&[]));
                    pos = i + 1;
                    let flow = on_frame(&self.buf);
                    self.reset();
                    if flow.is_break() {
                        return Ok(pos);
                    }
                }
                None => {
                    if !self.hold(chunk) {
                        return Ok(0);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        while let Some(rest) = chunk.get(pos..).filter(|rest| !rest.is_empty()) {
            match delimited::scan(rest, delimiter, 0, max)? {
                Some(i) => {
                    pos += i + 1;
                    if on_frame(rest.get(..i).unwrap_or(&[])).is_break() {
                        return Ok(pos);
                    }
                }
                None => {
                    if !self.hold(rest) {
                        return Ok(pos);
                    }
                    return Ok(chunk.len());
                }
            }
        }
        Ok(chunk.len())
    }

    /// Append delimiter-free bytes (the total staying within the maximum) to the message in
    /// progress, growing the buffer geometrically but never past the maximum. False (nothing
    /// appended) if the budget cannot cover them.
    fn hold(&mut self, bytes: &[u8]) -> bool {
        if !self.admit(bytes.len()) {
            return false;
        }
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(256)
                .min(self.codec.max_message_size())
                .max(needed);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        true
    }
}

/// Delivers the frames with an `N`-byte length prefix (read by `len_of`) that lie whole in
/// `chunk` from `pos` on, stopping in front of the first that does not (or whose length is over
/// `max`: the caller's general path reports it). Returns where it stopped and whether
/// `on_frame` asked to stop (then just past that frame).
#[inline(always)]
fn whole_frames<const N: usize, L: Into<u64>, F>(
    chunk: &[u8],
    mut pos: usize,
    max: usize,
    len_of: fn([u8; N]) -> L,
    on_frame: &mut F,
) -> (usize, bool)
where
    F: FnMut(&[u8]) -> ControlFlow<()>,
{
    while let Some(head) = chunk.get(pos..).and_then(|rest| rest.first_chunk::<N>()) {
        let len: u64 = len_of(*head).into();
        if len > max as u64 {
            break;
        }
        let start = pos + N;
        // `len <= max`, which fits in memory, so this cannot overflow.
        let end = start + len as usize;
        let Some(payload) = chunk.get(start..end) else {
            break;
        };
        pos = end;
        if on_frame(payload).is_break() {
            return (pos, true);
        }
    }
    (pos, false)
}

#[cfg(test)]
mod tests {
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
        let mut a = Decoder::with_budget(codec, budget.clone(), a_waker);
        let mut b = Decoder::with_budget(codec, budget.clone(), b_waker);
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
        let mut c = Decoder::with_budget(codec, budget.clone(), wakes().1);
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
        let mut d = Decoder::with_budget(codec, budget.clone(), wakes().1);
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
}
