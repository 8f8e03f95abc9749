//! A deadline for a connection's first request bytes.
//!
//! After the TLS handshake the HTTP layer first reads to tell HTTP/1.1 from HTTP/2, and that
//! read has no timeout of its own: a client that completes the handshake and then sends
//! nothing would hold a connection (a task, a socket, TLS buffers) for as long as it likes, and
//! a few thousand such clients would exhaust file descriptors. Wrapping the stream bounds that
//! wait by the header read timeout; once any byte has arrived, the HTTP layer's own timeouts
//! take over and the wrapper only passes reads and writes through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, failing its reads with `TimedOut` if no byte arrives within the deadline.
pub struct FirstRequestDeadline<S> {
    inner: S,
    /// Until the first byte has been read.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstRequestDeadline<S> {
    /// Starts the clock now.
    pub fn new(inner: S, timeout: Duration) -> Self {
        FirstRequestDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstRequestDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        match (&read, self.deadline.as_mut()) {
            (_, None) => read,
            (Poll::Ready(Ok(())), Some(_)) if buf.filled().len() > before => {
                self.deadline = None;
                read
            }
            (Poll::Pending, Some(deadline)) => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request arrived within the header read timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            // End of stream or an error before any byte: nothing to time.
            (Poll::Ready(_), Some(_)) => read,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstRequestDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn silence_times_out_and_a_first_byte_lifts_the_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let mut silent = FirstRequestDeadline::new(server, Duration::from_millis(100));
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = FirstRequestDeadline::new(server, Duration::from_millis(100));
        client.write_all(b"P").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        // Past the deadline, later reads wait as long as the peer takes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write_all(b"OST").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 3);
    }
}
