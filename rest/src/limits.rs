//! Limits on what one client can hold: open watches per user, and the helpers
//! the server uses to tie a resource to the life of a response body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

use super::body::ResponseBody;
use super::status::ApiError;

/// Open watches per user, bounded.
pub struct WatchLimiter {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open watch, counted until dropped (with the response body).
pub struct WatchPermit {
    limiter: Arc<WatchLimiter>,
    user: String,
}

impl WatchLimiter {
    /// At most `max` open watches per user; 0: unbounded.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(WatchLimiter { max, open: Mutex::default() })
    }

    /// Counts one more watch of `user`, or refuses it with 429 TooManyRequests
    /// once the user has `max` open; `None` when unbounded.
    pub fn acquire(self: &Arc<Self>, user: &str) -> Result<Option<WatchPermit>, ApiError> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(user.to_owned()).or_insert(0);
        if *n >= self.max {
            return Err(ApiError::too_many_requests(
                format!("too many open watches: user {user:?} has {n} open, the limit is {}", self.max),
                Some(1),
            ));
        }
        *n += 1;
        Ok(Some(WatchPermit { limiter: self.clone(), user: user.to_owned() }))
    }

    /// Open watches of `user`.
    pub fn open(&self, user: &str) -> usize {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(user).copied().unwrap_or(0)
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// `body`, holding `guard` until the body is finished or dropped.
pub fn guarded(body: ResponseBody, guard: Box<dyn Send + Sync>) -> ResponseBody {
    Guarded { inner: body, _guard: guard }.boxed()
}

struct Guarded {
    inner: ResponseBody,
    _guard: Box<dyn Send + Sync>,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of a refused request body is still read and dropped, so that the
/// client, still sending it, reads the error instead of a connection reset.
pub const DRAIN_BYTES: usize = 64 << 20;
/// And for how long at most.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and drops the rest of `body`, within `DRAIN_BYTES` and `DRAIN_TIME`.
pub async fn drain<B: Body + Unpin>(mut body: B) {
    let read = async {
        let mut n = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, bytes::Buf::remaining);
            if n > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_counted_per_user_and_released() {
        let l = WatchLimiter::new(2);
        let a1 = l.acquire("alice").unwrap();
        let _a2 = l.acquire("alice").unwrap();
        let e = l.acquire("alice").err().unwrap();
        assert_eq!((e.code, e.retry_after()), (429, Some(1)));
        assert_eq!(e.message, "too many open watches: user \"alice\" has 2 open, the limit is 2");
        assert!(l.acquire("bob").unwrap().is_some(), "another user is not affected");
        drop(a1);
        assert_eq!(l.open("alice"), 1);
        assert!(l.acquire("alice").is_ok());
        assert!(WatchLimiter::new(0).acquire("anyone").unwrap().is_none(), "0 is unbounded");
    }

    #[tokio::test]
    async fn a_guard_lives_as_long_as_the_body() {
        let l = WatchLimiter::new(1);
        let permit = l.acquire("u").unwrap().unwrap();
        let body = guarded(super::super::body::full("x"), Box::new(permit));
        assert_eq!(l.open("u"), 1);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"x");
        assert_eq!(l.open("u"), 0);
    }
}
