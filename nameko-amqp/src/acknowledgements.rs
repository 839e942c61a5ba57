//! Settling a consumer's deliveries, with consecutive acknowledgements folded into one frame.
//!
//! Acknowledging each delivery on its own costs a frame, a hand-over to the connection's I/O
//! thread and work in the broker for every message; under load that is most of what a consumer
//! spends. AMQP lets one `basic.ack` with `multiple` settle every delivery up to a tag, but only
//! safely when nothing below that tag is still being worked on: it would be acknowledged too,
//! unprocessed, and lost if the process then died. So each consumer channel keeps the tags it
//! has handed out and not yet seen settled, and settlements go out through one sender at a time
//! (a fair async lock). Whoever holds it sends everything settled so far in one go:
//!
//! - rejections and negative acknowledgements, one frame each, first;
//! - acknowledgements of tags above the lowest unsettled one, one frame each (they cannot be
//!   folded: `multiple` would take the unsettled one with them, and holding them back would let
//!   one slow worker pin the whole prefetch window);
//! - the acknowledgements below the lowest unsettled tag, as one `basic.ack multiple` up to the
//!   highest of them.
//!
//! The frames of a batch are queued in that order before any is awaited, and batches follow each
//! other, so a rejection always reaches the broker before an acknowledgement that spans its tag.
//! Callers that queued a settlement while someone else was sending find it sent when their turn
//! comes, and return; a settlement is never held back waiting for another, only for one turn
//! of the scheduler, in which workers that are done too can add theirs. At low load every batch
//! is one frame, exactly as before; under load one frame settles several deliveries (about four
//! per frame for events and RPC requests in the benchmark).
//!
//! Tags are registered as the consumer hands deliveries out. The broker numbers a channel's
//! deliveries in order and the consumer hands them out in that order, so no tag at or below a
//! registered one can be missing from the books: an acknowledgement spanning registered tags
//! never takes an unseen delivery with it. A delivery dropped without being settled stays
//! unsettled (the broker requeues it when the channel closes), which only stops folding beyond it.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};

use crate::error::{Error, Result};

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    Ack,
    Nack { requeue: bool },
    Reject { requeue: bool },
}

impl Settlement {
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Self::Ack => "basic.ack",
            Self::Nack { .. } => "basic.nack",
            Self::Reject { .. } => "basic.reject",
        }
    }
}

/// One frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    tag: u64,
    settlement: Settlement,
    /// For an acknowledgement: every delivery up to `tag`.
    multiple: bool,
}

/// The books of one consumer channel; see the module docs.
#[derive(Debug)]
pub(crate) struct Acknowledgements {
    channel: lapin::Channel,
    books: Mutex<Books>,
    /// Held by whoever is sending; fair, so batches go out in the order they were planned.
    sending: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Books {
    /// Handed out and not yet settled.
    unsettled: BTreeSet<u64>,
    /// Settled by their holder and not yet sent, in the order they were settled.
    queued: Vec<(u64, Settlement)>,
    /// Why sending failed; the channel is gone, so every later settlement fails too.
    failed: Option<(&'static str, lapin::Error)>,
}

impl Acknowledgements {
    pub(crate) fn new(channel: lapin::Channel) -> Self {
        Self {
            channel,
            books: Mutex::default(),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// The consumer channel these books are for.
    pub(crate) fn channel(&self) -> &lapin::Channel {
        &self.channel
    }

    /// Notes that the delivery `tag` was handed out.
    pub(crate) fn delivered(&self, tag: u64) {
        self.books().unsettled.insert(tag);
    }

    /// Settles `tag`: returns once its frame was sent, alone or with others.
    pub(crate) async fn settle(&self, tag: u64, settlement: Settlement) -> Result<()> {
        {
            let mut books = self.books();
            books.fail_if_failed()?;
            books.unsettled.remove(&tag);
            books.queued.push((tag, settlement));
        }
        let _turn = self.sending.lock().await;
        // Workers that are done but have not queued their settlement yet get one turn of the
        // scheduler to do so, and travel in this batch rather than in a frame of their own.
        tokio::task::yield_now().await;
        let frames = {
            let mut books = self.books();
            books.fail_if_failed()?;
            books.plan()
        };
        if frames.is_empty() {
            // Whoever sent before us took ours along.
            return Ok(());
        }
        send_in_order(&self.channel, &frames)
            .await
            .map_err(|(operation, source)| {
                self.books().failed = Some((operation, source.clone()));
                Error::amqp(operation, source)
            })
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Books {
    fn fail_if_failed(&self) -> Result<()> {
        match &self.failed {
            Some((operation, source)) => Err(Error::amqp(*operation, source.clone())),
            None => Ok(()),
        }
    }

    /// The frames that send everything queued, in a safe order (see the module docs).
    fn plan(&mut self) -> Vec<Frame> {
        let queued = std::mem::take(&mut self.queued);
        let lowest_unsettled = self.unsettled.first().copied().unwrap_or(u64::MAX);
        let mut frames = Vec::with_capacity(queued.len());
        let mut folded = Vec::new();
        for (tag, settlement) in queued {
            if settlement == Settlement::Ack && tag < lowest_unsettled {
                folded.push(tag);
            } else {
                frames.push(Frame {
                    tag,
                    settlement,
                    multiple: false,
                });
            }
        }
        // Others first: rejections before any acknowledgement that could span them.
        frames.sort_by_key(|frame| frame.settlement == Settlement::Ack);
        if let Some(&highest) = folded.iter().max() {
            frames.push(Frame {
                tag: highest,
                settlement: Settlement::Ack,
                multiple: folded.len() > 1,
            });
        }
        frames
    }
}

type Sending<'a> = Pin<Box<dyn Future<Output = lapin::Result<()>> + Send + 'a>>;

/// Sends `frames`: each is queued on the connection (in order, by its first poll) before any is
/// awaited. The first failure is returned once all have ended.
async fn send_in_order(
    channel: &lapin::Channel,
    frames: &[Frame],
) -> std::result::Result<(), (&'static str, lapin::Error)> {
    let mut sending: Vec<Option<(&'static str, Sending<'_>)>> = frames
        .iter()
        .map(|frame| Some((frame.settlement.operation(), send(channel, *frame))))
        .collect();
    let mut failure = None;
    std::future::poll_fn(|cx| {
        let mut busy = false;
        for slot in &mut sending {
            if let Some((operation, send)) = slot {
                match send.as_mut().poll(cx) {
                    Poll::Pending => busy = true,
                    Poll::Ready(result) => {
                        if let Err(source) = result {
                            failure.get_or_insert((*operation, source));
                        }
                        *slot = None;
                    }
                }
            }
        }
        if busy { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    failure.map_or(Ok(()), Err)
}

fn send(channel: &lapin::Channel, frame: Frame) -> Sending<'_> {
    let Frame {
        tag,
        settlement,
        multiple,
    } = frame;
    match settlement {
        Settlement::Ack => Box::pin(channel.basic_ack(tag, BasicAckOptions { multiple })),
        Settlement::Nack { requeue } => Box::pin(channel.basic_nack(
            tag,
            BasicNackOptions {
                multiple: false,
                requeue,
            },
        )),
        Settlement::Reject { requeue } => {
            Box::pin(channel.basic_reject(tag, BasicRejectOptions { requeue }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(unsettled: &[u64], queued: &[(u64, Settlement)]) -> Books {
        Books {
            unsettled: unsettled.iter().copied().collect(),
            queued: queued.to_vec(),
            failed: None,
        }
    }

    fn frame(tag: u64, settlement: Settlement, multiple: bool) -> Frame {
        Frame {
            tag,
            settlement,
            multiple,
        }
    }

    const REQUEUE: Settlement = Settlement::Reject { requeue: true };

    #[test]
    fn acknowledgements_below_every_unsettled_tag_fold_into_one_frame() {
        let mut books = books(
            &[9],
            &[
                (3, Settlement::Ack),
                (1, Settlement::Ack),
                (2, Settlement::Ack),
            ],
        );
        assert_eq!(books.plan(), [frame(3, Settlement::Ack, true)]);
        assert!(books.queued.is_empty());
    }

    #[test]
    fn a_single_acknowledgement_is_sent_alone() {
        let mut books = books(&[], &[(4, Settlement::Ack)]);
        assert_eq!(books.plan(), [frame(4, Settlement::Ack, false)]);
    }

    #[test]
    fn acknowledgements_above_an_unsettled_tag_are_sent_one_by_one() {
        // 2 is still being worked on: `multiple` up to 3 would acknowledge it unprocessed.
        let mut books = books(&[2], &[(1, Settlement::Ack), (3, Settlement::Ack)]);
        assert_eq!(
            books.plan(),
            [
                frame(3, Settlement::Ack, false),
                frame(1, Settlement::Ack, false)
            ]
        );
    }

    #[test]
    fn rejections_go_before_an_acknowledgement_that_spans_them() {
        let mut books = books(
            &[],
            &[
                (1, Settlement::Ack),
                (2, REQUEUE),
                (3, Settlement::Ack),
                (4, Settlement::Nack { requeue: false }),
            ],
        );
        assert_eq!(
            books.plan(),
            [
                frame(2, REQUEUE, false),
                frame(4, Settlement::Nack { requeue: false }, false),
                frame(3, Settlement::Ack, true),
            ]
        );
    }

    #[test]
    fn nothing_queued_plans_nothing() {
        assert!(books(&[1, 2], &[]).plan().is_empty());
    }
}
