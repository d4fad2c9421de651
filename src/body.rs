//! Collection of a request body into memory under a size limit, and a body that replays it.
//!
//! A signature covers the exact bytes of the body, so the body has to be read in full before it
//! can be verified; [`collect_limited`] does that without letting a sender make the server buffer
//! more than it is willing to, and [`ReplayBody`] hands the same bytes on to the inner service.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body::Body;
//! use http_body_util::Full;
//! use periskope_webhook::body::{CollectError, ReplayBody, collect_limited};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let body = Full::new(Bytes::from_static(br#"{"event":"chat.created"}"#));
//! let bytes = collect_limited(body, 1024).await?;
//!
//! // The inner service gets the same bytes, without a copy.
//! let replay = ReplayBody::new(bytes);
//! assert_eq!(replay.size_hint().exact(), Some(24));
//!
//! let too_large = collect_limited(Full::new(Bytes::from(vec![0; 2048])), 1024).await;
//! assert!(matches!(too_large, Err(CollectError::TooLarge { limit: 1024 })));
//! # Ok(())
//! # }
//! ```

use std::{
    convert::Infallible,
    error::Error,
    fmt,
    future::Future,
    mem,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Reads `body` to the end into a single [`Bytes`], failing once it exceeds `limit` bytes.
///
/// A body whose [`size_hint`](Body::size_hint) already promises more than `limit` bytes is
/// rejected before any of it is read. Otherwise data frames are read until the body ends, and
/// reading stops at the first frame that would take the total past `limit`. Trailers are ignored.
///
/// A body that arrives as a single data frame is returned as it is, without a copy, when its
/// data type is [`Bytes`]; only a body split over several frames is copied into one buffer.
///
/// This returns a named future rather than being an `async fn` so that it can be embedded in
/// another future's state without boxing.
pub fn collect_limited<B: Body>(body: B, limit: usize) -> Collect<B> {
    Collect { body, limit, state: State::Start }
}

pin_project! {
    /// The future returned by [`collect_limited`].
    ///
    /// Polling it again after it has completed returns [`Poll::Pending`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Collect<B> {
        #[pin]
        body: B,
        limit: usize,
        state: State,
    }
}

enum State {
    /// The size hint has not been checked yet.
    Start,
    /// No data so far.
    Empty,
    /// Exactly one non-empty data frame so far, kept as it is so it can be returned uncopied.
    One(Bytes),
    /// Several data frames so far, copied into one buffer.
    Many(BytesMut),
    /// The output has been returned.
    Done,
}

impl State {
    fn len(&self) -> usize {
        match self {
            Self::One(bytes) => bytes.len(),
            Self::Many(buf) => buf.len(),
            Self::Start | Self::Empty | Self::Done => 0,
        }
    }
}

impl<B: Body> Future for Collect<B> {
    type Output = Result<Bytes, CollectError<B::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let limit = *this.limit;
        match this.state {
            State::Start => {
                if saturating_usize(this.body.size_hint().lower()) > limit {
                    *this.state = State::Done;
                    return Poll::Ready(Err(CollectError::TooLarge { limit }));
                }
                *this.state = State::Empty;
            }
            // Like a fused future, rather than polling a body that has already finished.
            State::Done => return Poll::Pending,
            State::Empty | State::One(_) | State::Many(_) => {}
        }

        loop {
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    *this.state = State::Done;
                    return Poll::Ready(Err(CollectError::Body(error)));
                }
                None => {
                    let bytes = match mem::replace(this.state, State::Done) {
                        State::One(bytes) => bytes,
                        State::Many(buf) => buf.freeze(),
                        State::Start | State::Empty | State::Done => Bytes::new(),
                    };
                    return Poll::Ready(Ok(bytes));
                }
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let len = data.remaining();
            // The total never exceeds `limit`, so the subtraction cannot underflow.
            if len > limit - this.state.len() {
                *this.state = State::Done;
                return Poll::Ready(Err(CollectError::TooLarge { limit }));
            }
            *this.state = match mem::replace(this.state, State::Done) {
                // An empty frame must not end the single-frame fast path.
                state if len == 0 => state,
                State::Start | State::Empty | State::Done => State::One(data.copy_to_bytes(len)),
                State::One(first) => {
                    // Reserve for what the body still promises so the buffer grows only once,
                    // but never past the limit, since a size hint is not to be trusted.
                    let rest = saturating_usize(this.body.size_hint().lower());
                    let capacity = first.len().saturating_add(len).saturating_add(rest);
                    let mut buf = BytesMut::with_capacity(capacity.min(limit));
                    buf.extend_from_slice(&first);
                    buf.put(data);
                    State::Many(buf)
                }
                State::Many(mut buf) => {
                    buf.put(data);
                    State::Many(buf)
                }
            };
        }
    }
}

fn saturating_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The error returned by [`collect_limited`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CollectError<E> {
    /// The body is longer than the limit.
    TooLarge {
        /// The limit, in bytes, that the body exceeded.
        limit: usize,
    },
    /// Reading the body failed.
    Body(E),
}

impl<E> fmt::Display for CollectError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "body is larger than the limit of {limit} bytes"),
            // The cause is reported through `source`, so that it is not printed twice.
            Self::Body(_) => f.write_str("failed to read body"),
        }
    }
}

impl<E: Error + 'static> Error for CollectError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Body(error) => Some(error),
        }
    }
}

/// A body that yields bytes that were already collected, as a single data frame.
///
/// It shares the [`Bytes`] buffer it is given instead of copying it, so handing a collected body
/// on to the inner service costs no allocation. An empty body yields no frame at all.
#[derive(Debug, Clone, Default)]
pub struct ReplayBody {
    data: Option<Bytes>,
}

impl ReplayBody {
    /// Creates a body that yields `data`.
    pub fn new(data: Bytes) -> Self {
        Self { data: (!data.is_empty()).then_some(data) }
    }
}

impl From<Bytes> for ReplayBody {
    fn from(data: Bytes) -> Self {
        Self::new(data)
    }
}

impl From<String> for ReplayBody {
    fn from(text: String) -> Self {
        Self::new(Bytes::from(text))
    }
}

impl From<&'static str> for ReplayBody {
    fn from(text: &'static str) -> Self {
        Self::new(Bytes::from_static(text.as_bytes()))
    }
}

impl From<Vec<u8>> for ReplayBody {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(Bytes::from(bytes))
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.get_mut().data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |data| data.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http::HeaderMap;
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Boom;

    impl fmt::Display for Boom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("boom")
        }
    }

    impl Error for Boom {}

    /// Yields the given frames in order, with a size hint that may be set to anything.
    struct TestBody {
        frames: VecDeque<Result<Frame<Bytes>, Boom>>,
        hint: SizeHint,
    }

    impl TestBody {
        fn new(frames: impl IntoIterator<Item = Result<Frame<Bytes>, Boom>>) -> Self {
            Self { frames: frames.into_iter().collect(), hint: SizeHint::new() }
        }

        fn chunks(chunks: &[&'static [u8]]) -> Self {
            Self::new(chunks.iter().map(|chunk| Ok(Frame::data(Bytes::from_static(chunk)))))
        }
    }

    impl Body for TestBody {
        type Data = Bytes;
        type Error = Boom;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Boom>>> {
            Poll::Ready(self.get_mut().frames.pop_front())
        }

        fn size_hint(&self) -> SizeHint {
            self.hint
        }
    }

    #[tokio::test]
    async fn body_of_exactly_the_limit_is_accepted() {
        let body = TestBody::chunks(&[b"abcd", b"efgh", b"ij"]);
        let bytes = collect_limited(body, 10).await.unwrap();
        assert_eq!(bytes, "abcdefghij");

        let bytes = collect_limited(Full::new(Bytes::from_static(b"abc")), 3).await.unwrap();
        assert_eq!(bytes, "abc");
    }

    #[tokio::test]
    async fn body_over_the_limit_is_rejected() {
        let body = TestBody::chunks(&[b"abcd", b"efgh", b"ijk"]);
        let error = collect_limited(body, 10).await.unwrap_err();
        assert!(matches!(error, CollectError::TooLarge { limit: 10 }));

        // A single frame that is too large on its own, with no size hint to give it away.
        let error = collect_limited(TestBody::chunks(&[b"abcd"]), 3).await.unwrap_err();
        assert!(matches!(error, CollectError::TooLarge { limit: 3 }));
    }

    #[tokio::test]
    async fn size_hint_over_the_limit_is_rejected_before_reading() {
        // Polling this body would fail with `Body(Boom)`, so `TooLarge` proves it was not read.
        let mut body = TestBody::new([Err(Boom)]);
        body.hint = SizeHint::with_exact(10 * 1024 * 1024);
        let error = collect_limited(body, 1024).await.unwrap_err();
        assert!(matches!(error, CollectError::TooLarge { limit: 1024 }));

        let mut body = TestBody::new([Err(Boom)]);
        body.hint.set_lower(1025);
        let error = collect_limited(body, 1024).await.unwrap_err();
        assert!(matches!(error, CollectError::TooLarge { limit: 1024 }));
    }

    #[tokio::test]
    async fn several_frames_are_joined_and_trailers_ignored() {
        let mut body = TestBody::chunks(&[b"{\"event\":", b"", b"\"chat", b".created\"}"]);
        body.frames.push_back(Ok(Frame::trailers(HeaderMap::new())));
        body.hint.set_lower(4);
        let bytes = collect_limited(body, 1024).await.unwrap();
        assert_eq!(bytes, r#"{"event":"chat.created"}"#);
    }

    #[tokio::test]
    async fn single_frame_is_not_copied() {
        let data = Bytes::from(b"{\"event\":\"chat.created\"}".to_vec());
        let body = TestBody::new([
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::data(data.clone())),
            Ok(Frame::data(Bytes::new())),
            Ok(Frame::trailers(HeaderMap::new())),
        ]);
        let bytes = collect_limited(body, 1024).await.unwrap();
        assert_eq!(bytes.as_ptr(), data.as_ptr());
        assert_eq!(bytes, data);

        let replayed = collect_limited(ReplayBody::new(data.clone()), data.len()).await.unwrap();
        assert_eq!(replayed.as_ptr(), data.as_ptr());
    }

    #[tokio::test]
    async fn empty_body_collects_to_empty_bytes() {
        let bytes = collect_limited(TestBody::new([]), 0).await.unwrap();
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn body_error_midway_is_reported() {
        let body = TestBody::new([
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"def"))),
            Err(Boom),
            Ok(Frame::data(Bytes::from_static(b"ghi"))),
        ]);
        let error = collect_limited(body, 1024).await.unwrap_err();
        assert!(error.source().is_some());
        assert!(matches!(error, CollectError::Body(Boom)));
    }

    #[tokio::test]
    async fn replay_body_yields_its_bytes_once() {
        let data = Bytes::from_static(b"hello");
        let mut body = ReplayBody::from(data.clone());
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));

        let frame = body.frame().await.unwrap().unwrap();
        let chunk = frame.into_data().unwrap();
        assert_eq!(chunk.as_ptr(), data.as_ptr());
        assert_eq!(chunk, data);

        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn empty_replay_body_yields_nothing() {
        for mut body in [ReplayBody::default(), ReplayBody::new(Bytes::new())] {
            assert!(body.is_end_stream());
            assert_eq!(body.size_hint().exact(), Some(0));
            assert!(body.frame().await.is_none());
        }
    }
}
