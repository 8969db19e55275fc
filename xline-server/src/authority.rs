//! Accepts the HTTP/2 `:authority` that etcd's own Go client sends on per-endpoint calls.
//!
//! etcdctl 3.4 (and other clientv3 users of that era) dial maintenance calls such as
//! `endpoint status`, `endpoint hashkv`, `defrag` and `snapshot save` with the endpoint *URL* as
//! the gRPC target, so the request carries `:authority: http://127.0.0.1:2379`. grpc-go servers
//! (etcd) accept that; the h2 crate under tonic rejects it as a malformed authority and resets the
//! stream with PROTOCOL_ERROR, before any hook of ours runs. [`AuthorityFix`] sits between the
//! socket and h2 on client connections and rewrites such an authority to its `host:port` part.
//!
//! It parses only the client-to-server frame layer: every frame other than HEADERS/CONTINUATION
//! is passed on untouched (DATA bytes are read straight into h2's buffer). Header blocks are
//! HPACK-decoded to keep a mirror of the client's dynamic table; a block is passed on byte for
//! byte unless it carries an authority with a scheme. Such a block is re-encoded with literal
//! representations only: fields the client inserted into its dynamic table are inserted again
//! (with the shortened value), every other field becomes a literal without indexing. h2's table
//! then holds the same entries in the same order, each no larger than the client's, so h2 never
//! evicts an entry the client may still reference. A block that does not decode is passed on as
//! it is and the connection becomes transparent (h2 reports the error itself). So does a
//! connection whose first `:authority` needs no fix: clients send their dial target as the
//! authority of every request on a connection, so nothing after it would need one either, and
//! the connection then costs no parsing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use httlib_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
const FRAME_HEADER: usize = 9;
/// Frame types.
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// Frame flags.
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest frame payload we emit (the HTTP/2 default SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// Largest header block buffered (h2's own default header list limit is 16 KiB; a larger
/// block is passed through and left to h2 to refuse).
const MAX_BLOCK: usize = 1 << 20;

/// Where the reader is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Expecting the connection preface.
    Preface,
    /// Between frames.
    FrameStart,
    /// Passing `remaining` payload bytes of a frame through.
    Through { remaining: usize },
    /// Collecting a header block: the HEADERS frame's head and the fragments so far.
    Block(Block),
    /// Nothing more is interpreted: bytes pass straight through.
    Transparent,
}

/// A header block being collected (HEADERS plus CONTINUATION frames).
#[derive(Debug)]
struct Block {
    /// The original frames, byte for byte, to forward if the block needs no change.
    raw: BytesMut,
    /// Flags of the HEADERS frame.
    flags: u8,
    /// Stream id (31 bits) of the HEADERS frame.
    stream: u32,
    /// The PRIORITY fields of the HEADERS frame, if present.
    priority: Option<[u8; 5]>,
    /// The block fragments concatenated.
    fragment: Vec<u8>,
}

/// A client connection whose header blocks get their `:authority` fixed; see the module docs.
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes read from `inner` and not yet interpreted.
    input: BytesMut,
    /// Bytes ready for h2.
    output: BytesMut,
    state: State,
    decoder: Decoder<'static>,
    /// Read buffer for socket reads that are interpreted.
    scratch: Box<[u8]>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps an accepted client connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            input: BytesMut::with_capacity(8 * 1024),
            output: BytesMut::new(),
            state: State::Preface,
            decoder: Decoder::default(),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves what can be interpreted from `input` to `output`; returns whether anything moved.
    fn process(&mut self) -> bool {
        let mut progressed = false;
        loop {
            match &mut self.state {
                State::Transparent => {
                    if self.input.is_empty() {
                        return progressed;
                    }
                    let all = self.input.split();
                    self.output.extend_from_slice(&all);
                    return true;
                }
                State::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if n < PREFACE.len() && !self.eof {
                        if self.input[..n] != PREFACE[..n] {
                            self.state = State::Transparent;
                            continue;
                        }
                        return progressed;
                    }
                    if self.input[..n] != PREFACE[..n] {
                        self.state = State::Transparent;
                        continue;
                    }
                    let preface = self.input.split_to(n);
                    self.output.extend_from_slice(&preface);
                    self.state = State::FrameStart;
                    progressed = true;
                }
                State::Through { remaining } => {
                    if *remaining == 0 {
                        self.state = State::FrameStart;
                        continue;
                    }
                    if self.input.is_empty() {
                        return progressed;
                    }
                    let n = self.input.len().min(*remaining);
                    *remaining -= n;
                    let chunk = self.input.split_to(n);
                    self.output.extend_from_slice(&chunk);
                    progressed = true;
                }
                State::FrameStart | State::Block(_) => {
                    let Some(head) = FrameHead::parse(&self.input) else {
                        return progressed;
                    };
                    let in_block = matches!(self.state, State::Block(_));
                    match (in_block, head.kind) {
                        (false, HEADERS) => {
                            if self.input.len() < FRAME_HEADER + head.len {
                                return progressed;
                            }
                            let frame = self.input.split_to(FRAME_HEADER + head.len);
                            progressed = true;
                            match Block::start(&head, frame) {
                                Some(block) if head.flags & END_HEADERS != 0 => {
                                    self.finish_block(block);
                                }
                                Some(block) => self.state = State::Block(block),
                                None => self.go_transparent_with(&[]),
                            }
                        }
                        (true, CONTINUATION) => {
                            if self.input.len() < FRAME_HEADER + head.len {
                                return progressed;
                            }
                            let frame = self.input.split_to(FRAME_HEADER + head.len);
                            progressed = true;
                            let State::Block(block) =
                                std::mem::replace(&mut self.state, State::FrameStart)
                            else {
                                unreachable!("checked above");
                            };
                            let mut block = block;
                            if block.raw.len() + frame.len() > MAX_BLOCK {
                                let raw = block.raw;
                                self.go_transparent_with(&raw);
                                self.output.extend_from_slice(&frame);
                                continue;
                            }
                            block.raw.extend_from_slice(&frame);
                            block.fragment.extend_from_slice(&frame[FRAME_HEADER..]);
                            if head.flags & END_HEADERS != 0 {
                                self.finish_block(block);
                            } else {
                                self.state = State::Block(block);
                            }
                        }
                        (true, _) => {
                            // Anything but CONTINUATION inside a block is a connection error
                            // h2 will report; stop interpreting.
                            let State::Block(block) =
                                std::mem::replace(&mut self.state, State::FrameStart)
                            else {
                                unreachable!("checked above");
                            };
                            self.go_transparent_with(&block.raw);
                            progressed = true;
                        }
                        (false, _) => {
                            let header = self.input.split_to(FRAME_HEADER);
                            self.output.extend_from_slice(&header);
                            self.state = State::Through {
                                remaining: head.len,
                            };
                            progressed = true;
                        }
                    }
                }
            }
        }
    }

    /// Forwards `pending` and every later byte unchanged.
    fn go_transparent_with(&mut self, pending: &[u8]) {
        self.output.extend_from_slice(pending);
        self.state = State::Transparent;
    }

    /// Decodes a complete header block and forwards it, rewritten if its authority has a scheme.
    fn finish_block(&mut self, block: Block) {
        self.state = State::FrameStart;
        let mut buf = block.fragment.clone();
        let mut fields = Vec::new();
        if self.decoder.decode(&mut buf, &mut fields).is_err() {
            self.go_transparent_with(&block.raw);
            return;
        }
        let authority = fields
            .iter()
            .find(|(name, _, _)| name == b":authority")
            .map(|(_, value, _)| value);
        let Some(fixed) = authority.map(|value| fixed_authority(value)) else {
            self.output.extend_from_slice(&block.raw);
            return;
        };
        if fixed.is_none() {
            // A client sends one authority per connection (its dial target): this one needs no
            // fix, so neither will its later requests. Stop interpreting.
            self.go_transparent_with(&block.raw);
            return;
        }
        let mut encoded = Vec::with_capacity(block.fragment.len() + 16);
        for (name, value, flags) in &fields {
            let value = if name == b":authority" {
                fixed_authority(value).unwrap_or(value)
            } else {
                value
            };
            encode_literal(&mut encoded, name, value, *flags);
        }
        write_block(&mut self.output, &block, &encoded);
    }
}

/// A parsed frame header.
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(input: &[u8]) -> Option<Self> {
        let head = input.get(..FRAME_HEADER)?;
        Some(Self {
            len: usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]),
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        })
    }
}

impl Block {
    /// Starts a block from a complete HEADERS frame; `None` if its padding is malformed.
    fn start(head: &FrameHead, frame: BytesMut) -> Option<Self> {
        let mut payload = &frame[FRAME_HEADER..];
        let mut pad = 0;
        if head.flags & PADDED != 0 {
            pad = usize::from(*payload.first()?);
            payload = &payload[1..];
        }
        let mut priority = None;
        if head.flags & PRIORITY != 0 {
            let fields: [u8; 5] = payload.get(..5)?.try_into().ok()?;
            priority = Some(fields);
            payload = &payload[5..];
        }
        let fragment = payload.get(..payload.len().checked_sub(pad)?)?.to_vec();
        Some(Self {
            flags: head.flags,
            stream: head.stream,
            priority,
            fragment,
            raw: frame,
        })
    }
}

/// The `host:port` of an authority written as a URL, if it is one.
fn fixed_authority(value: &[u8]) -> Option<&[u8]> {
    let at = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[at + 3..];
    let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    (end > 0).then_some(&rest[..end])
}

/// Appends an HPACK integer with an `prefix`-bit prefix whose high bits are `first`.
fn encode_int(out: &mut Vec<u8>, first: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        // Fits in the prefix: `value < max <= 127`.
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Appends a literal field with a literal name and raw (not Huffman) strings, keeping whether
/// the client indexed it (`flags` as the decoder reported them).
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8], flags: u8) {
    let first = if flags & Decoder::WITH_INDEXING != 0 {
        0x40
    } else if flags & Decoder::NEVER_INDEXED != 0 {
        0x10
    } else {
        0x00
    };
    out.push(first);
    encode_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    encode_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// Writes `encoded` as a HEADERS frame (no padding) and CONTINUATION frames as needed.
fn write_block(out: &mut BytesMut, block: &Block, encoded: &[u8]) {
    let mut payload = Vec::with_capacity(encoded.len() + 5);
    let mut flags = block.flags & END_STREAM;
    if let Some(priority) = block.priority {
        payload.extend_from_slice(&priority);
        flags |= PRIORITY;
    }
    payload.extend_from_slice(encoded);
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    if chunks.peek().is_none() {
        put_frame(out, HEADERS, flags | END_HEADERS, block.stream, &[]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let frame_flags = if last { flags | END_HEADERS } else { flags };
        put_frame(out, kind, frame_flags, block.stream, chunk);
        kind = CONTINUATION;
        flags &= !(END_STREAM | PRIORITY);
    }
}

fn put_frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.put_slice(payload);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.process() {
                continue;
            }
            if this.eof {
                // Whatever is left cannot be interpreted any more: hand it on.
                if let State::Block(block) = std::mem::replace(&mut this.state, State::Transparent)
                {
                    this.output.extend_from_slice(&block.raw);
                }
                if !this.input.is_empty() {
                    let rest = this.input.split();
                    this.output.extend_from_slice(&rest);
                }
                if !this.output.is_empty() {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            // Large DATA payloads go straight into h2's buffer.
            let direct = match this.state {
                State::Through { remaining } if this.input.is_empty() => Some(remaining),
                State::Transparent if this.input.is_empty() => Some(usize::MAX),
                _ => None,
            };
            if let Some(limit) = direct.filter(|l| *l > 0) {
                let before = buf.filled().len();
                if limit >= buf.remaining() {
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                } else {
                    let mut sub = ReadBuf::new(buf.initialize_unfilled_to(limit));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sub))?;
                    let n = sub.filled().len();
                    buf.advance(n);
                }
                let n = buf.filled().len() - before;
                if n == 0 {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                if let State::Through { remaining } = &mut this.state {
                    *remaining -= n;
                }
                return Poll::Ready(Ok(()));
            }
            let n = {
                let mut rb = ReadBuf::new(&mut this.scratch[..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                let filled = rb.filled();
                this.input.extend_from_slice(filled);
                filled.len()
            };
            if n == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httlib_hpack::Encoder;
    use tokio::io::AsyncReadExt;

    /// A reader handing out at most `step` bytes per read.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = (this.data.len() - this.pos)
                .min(this.step)
                .min(buf.remaining());
            buf.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame(&mut out, kind, flags, stream, payload);
        out.to_vec()
    }

    fn encode(enc: &mut Encoder<'_>, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            let flags = Encoder::HUFFMAN_NAME
                | Encoder::HUFFMAN_VALUE
                | Encoder::WITH_INDEXING
                | Encoder::BEST_FORMAT;
            enc.encode(
                (name.as_bytes().to_vec(), value.as_bytes().to_vec(), flags),
                &mut out,
            )
            .expect("encode");
        }
        out
    }

    /// A frame read back: type, flags, stream, payload.
    type Frame = (u8, u8, u32, Vec<u8>);

    fn frames(mut bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let head = FrameHead::parse(bytes).expect("frame header");
            let payload = bytes[FRAME_HEADER..FRAME_HEADER + head.len].to_vec();
            out.push((head.kind, head.flags, head.stream, payload));
            bytes = &bytes[FRAME_HEADER + head.len..];
        }
        out
    }

    /// Client bytes: preface, settings, three requests (the second refers to the first's
    /// authority through the dynamic table; the third is padded, prioritized and split into a
    /// CONTINUATION), data in between, and a request without a scheme in its authority.
    fn client_stream() -> (Vec<u8>, Vec<u8>) {
        let mut enc = Encoder::default();
        let req = |authority: &'static str| {
            vec![
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/etcdserverpb.Maintenance/Status"),
                (":authority", authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
        };
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        let b1 = encode(&mut enc, &req("http://127.0.0.1:2379"));
        out.extend(frame(HEADERS, END_HEADERS, 1, &b1));
        let data = vec![0u8, 0, 0, 0, 3, 1, 2, 3];
        out.extend(frame(0x0, END_STREAM, 1, &data));
        let b2 = encode(&mut enc, &req("http://127.0.0.1:2379"));
        out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &b2));
        let b3 = encode(&mut enc, &req("https://[::1]:2379/some/path"));
        let (first, second) = b3.split_at(b3.len() / 2);
        let mut padded = vec![4u8];
        padded.extend_from_slice(&[0, 0, 0, 0, 16]);
        padded.extend_from_slice(first);
        padded.extend_from_slice(&[0; 4]);
        out.extend(frame(HEADERS, PADDED | PRIORITY, 5, &padded));
        out.extend(frame(CONTINUATION, END_HEADERS, 5, second));
        let b4 = encode(&mut enc, &req("127.0.0.1:2379"));
        out.extend(frame(HEADERS, END_HEADERS, 7, &b4));
        out.extend(frame(0x0, END_STREAM, 7, &data));
        (out, data)
    }

    async fn run(step: usize) {
        let (input, data) = client_stream();
        let mut fix = AuthorityFix::new(Trickle {
            data: input.clone(),
            pos: 0,
            step,
        });
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let frames = frames(&out[PREFACE.len()..]);
        let kinds: Vec<(u8, u32)> = frames.iter().map(|f| (f.0, f.2)).collect();
        assert_eq!(
            kinds,
            vec![
                (0x4, 0),
                (HEADERS, 1),
                (0x0, 1),
                (HEADERS, 3),
                (HEADERS, 5),
                (HEADERS, 7),
                (0x0, 7)
            ]
        );
        // Decode as h2 would, with a decoder of its own.
        let mut h2 = Decoder::default();
        let mut authorities = Vec::new();
        for (kind, flags, _, payload) in &frames {
            if *kind != HEADERS {
                continue;
            }
            assert_ne!(flags & END_HEADERS, 0);
            let mut block = if flags & PRIORITY != 0 {
                assert_eq!(&payload[..5], &[0, 0, 0, 0, 16]);
                payload[5..].to_vec()
            } else {
                payload.clone()
            };
            let mut fields = Vec::new();
            h2.decode(&mut block, &mut fields).expect("h2 decodes");
            let get = |n: &str| {
                fields
                    .iter()
                    .find(|f| f.0 == n.as_bytes())
                    .map(|f| String::from_utf8(f.1.clone()).expect("utf8"))
            };
            assert_eq!(
                get(":path").as_deref(),
                Some("/etcdserverpb.Maintenance/Status")
            );
            assert_eq!(get("te").as_deref(), Some("trailers"));
            authorities.push(get(":authority").expect("authority"));
        }
        assert_eq!(
            authorities,
            [
                "127.0.0.1:2379",
                "127.0.0.1:2379",
                "[::1]:2379",
                "127.0.0.1:2379"
            ]
        );
        assert_eq!(frames[1].1 & END_STREAM, 0);
        assert_ne!(frames[3].1 & END_STREAM, 0);
        assert_eq!(frames[2].3, data);
        assert_eq!(frames[6].3, data);
    }

    #[tokio::test]
    async fn rewrites_authority_urls_and_keeps_tables_in_step() {
        for step in [1, 7, 64, 100_000] {
            run(step).await;
        }
    }

    #[tokio::test]
    async fn blocks_without_a_url_pass_byte_for_byte() {
        let mut enc = Encoder::default();
        let mut input = PREFACE.to_vec();
        let block = encode(
            &mut enc,
            &[(":authority", "localhost:2379"), (":path", "/a")],
        );
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input.extend(frame(0x0, 0, 1, &[9; 40_000][..16_000]));
        // The connection's authority needed no fix: later blocks are not even parsed.
        input.extend(frame(HEADERS, END_HEADERS, 3, &[0xff; 7]));
        let mut fix = AuthorityFix::new(Trickle {
            data: input.clone(),
            pos: 0,
            step: 1000,
        });
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, input);
        assert!(matches!(fix.state, State::Transparent));
    }

    #[tokio::test]
    async fn non_http2_bytes_pass_through() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let mut fix = AuthorityFix::new(Trickle {
            data: input.clone(),
            pos: 0,
            step: 3,
        });
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, input);
    }

    #[test]
    fn authority_forms() {
        assert_eq!(fixed_authority(b"http://a:1"), Some(&b"a:1"[..]));
        assert_eq!(fixed_authority(b"unix://x/y"), Some(&b"x"[..]));
        assert_eq!(fixed_authority(b"a:1"), None);
        assert_eq!(fixed_authority(b"http://"), None);
    }

    #[test]
    fn integers_round_trip_hpack_prefixes() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 7, 126);
        assert_eq!(out, [126]);
        out.clear();
        encode_int(&mut out, 0, 7, 127);
        assert_eq!(out, [127, 0]);
        out.clear();
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        encode_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }
}
